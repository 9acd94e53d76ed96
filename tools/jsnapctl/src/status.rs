//! The status lines of the two targets (`dmsetup status`, README "Status"):
//! parsing, the JSON form and the human-readable form.  Pure: no I/O.

use std::fmt::Write;

/// One value of a `key=value` token: a number when it is plain decimal
/// that fits in a u64, text otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    Num(u64),
    Str(String),
}

impl Val {
    fn parse(s: &str) -> Val {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = s.parse::<u64>() {
                return Val::Num(n);
            }
        }
        Val::Str(s.to_string())
    }

    /// The value as JSON (numbers as numbers).
    pub fn json(&self) -> String {
        match self {
            Val::Num(n) => n.to_string(),
            Val::Str(s) => json_str(s),
        }
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// A status line as `key=value` tokens, in the order the target printed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub fields: Vec<(String, Val)>,
}

impl Status {
    /// Parses a status line: space-separated `key=value` tokens, keys
    /// non-empty and unique.
    pub fn parse(line: &str) -> Result<Status, String> {
        let mut fields: Vec<(String, Val)> = Vec::new();
        for tok in line.split_ascii_whitespace() {
            let (k, v) = tok
                .split_once('=')
                .ok_or_else(|| format!("status token '{tok}' is not key=value"))?;
            if k.is_empty() {
                return Err(format!("status token '{tok}' has an empty key"));
            }
            if fields.iter().any(|(x, _)| x == k) {
                return Err(format!("status key '{k}' appears twice"));
            }
            fields.push((k.to_string(), Val::parse(v)));
        }
        if fields.is_empty() {
            return Err("empty status line".to_string());
        }
        Ok(Status { fields })
    }

    pub fn get(&self, key: &str) -> Option<&Val> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn num(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            Val::Num(n) => Some(*n),
            Val::Str(_) => None,
        }
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Val::Str(s) => Some(s),
            Val::Num(_) => None,
        }
    }

    /// One JSON object: `extra` first, then every status key as parsed.
    pub fn to_json(&self, extra: &[(&str, Val)]) -> String {
        let mut s = String::from("{");
        let mut first = true;
        let all = extra
            .iter()
            .map(|(k, v)| (*k, v))
            .chain(self.fields.iter().map(|(k, v)| (k.as_str(), v)));
        for (k, v) in all {
            if !first {
                s.push_str(", ");
            }
            first = false;
            let _ = write!(s, "{}: {}", json_str(k), v.json());
        }
        s.push('}');
        s
    }
}

/// The keys a `jsnap` status line must have (README), in order.
#[cfg(test)]
pub const JSNAP_KEYS: [&str; 15] = [
    "journal_used",
    "journal_size",
    "pending",
    "snapshot",
    "preserved",
    "chunks",
    "hydration",
    "errors",
    "state",
    "extents",
    "snap_extents",
    "deferred",
    "views",
    "written_bytes",
    "destaged_bytes",
];

/// The fields of a `jsnap` status line that the tool acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsnapStatus {
    pub journal_used: u64,
    pub journal_size: u64,
    pub pending: u64,
    pub snapshot: String,
    pub preserved: u64,
    pub chunks: u64,
    pub hydration: String,
    pub errors: u64,
    pub state: String,
    pub extents: u64,
    pub snap_extents: u64,
    pub deferred: u64,
    pub views: u64,
    pub written_bytes: u64,
    pub destaged_bytes: u64,
}

impl JsnapStatus {
    pub fn from_status(st: &Status) -> Result<JsnapStatus, String> {
        let n = |k: &str| {
            st.num(k)
                .ok_or_else(|| format!("status has no numeric '{k}'"))
        };
        let t = |k: &str| {
            st.text(k)
                .map(str::to_string)
                .ok_or_else(|| format!("status has no '{k}'"))
        };
        Ok(JsnapStatus {
            journal_used: n("journal_used")?,
            journal_size: n("journal_size")?,
            pending: n("pending")?,
            snapshot: t("snapshot")?,
            preserved: n("preserved")?,
            chunks: n("chunks")?,
            hydration: t("hydration")?,
            errors: n("errors")?,
            state: t("state")?,
            extents: n("extents")?,
            snap_extents: n("snap_extents")?,
            deferred: n("deferred")?,
            views: n("views")?,
            written_bytes: n("written_bytes")?,
            destaged_bytes: n("destaged_bytes")?,
        })
    }

    #[cfg(test)]
    pub fn parse(line: &str) -> Result<JsnapStatus, String> {
        JsnapStatus::from_status(&Status::parse(line)?)
    }
}

/// Bytes in binary units: `512 B`, `4.0 KiB`, `12.5 MiB`, `1.00 GiB`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// `part` of `whole` as a percentage with one decimal (`0.0%` of nothing).
pub fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0.0%".to_string();
    }
    let p = (part as f64) * 100.0 / (whole as f64);
    // never round an incomplete amount up to 100.0%
    let p = if part < whole { p.min(99.9) } else { p };
    format!("{p:.1}%")
}

/// What the human-readable report needs besides the status line.
pub struct Describe<'a> {
    pub name: &'a str,
    pub devnum: &'a str,
    pub sectors: u64,
    pub chunk_sectors: u32,
    pub table: &'a str,
    pub store: bool,
    /// (view name, mode) of each attached view found
    pub views: &'a [(String, String)],
}

/// The human-readable report of a jsnap device.
pub fn human(d: &Describe<'_>, st: &JsnapStatus) -> String {
    let mut s = String::new();
    let chunk_bytes = u64::from(d.chunk_sectors) * 512;
    let _ = writeln!(
        s,
        "{}: /dev/mapper/{} ({}), {}, chunk {}",
        d.name,
        d.name,
        d.devnum,
        fmt_bytes(d.sectors * 512),
        fmt_bytes(chunk_bytes)
    );
    let _ = writeln!(s, "  table:      {}", d.table);
    let _ = writeln!(
        s,
        "  journal:    {} of {} used ({}), {} records pending, {} extents, {} writers waiting",
        fmt_bytes(st.journal_used),
        fmt_bytes(st.journal_size),
        pct(st.journal_used, st.journal_size),
        st.pending,
        st.extents,
        st.deferred
    );
    let snap = match st.snapshot.as_str() {
        "none" if !d.store => "none (no store: snapshots are not possible)".to_string(),
        "none" => "none".to_string(),
        other => format!(
            "{other}, {} of {} chunks preserved ({}), hydration {}, {} superseded journal extents kept",
            st.preserved,
            st.chunks,
            pct(st.preserved, st.chunks),
            st.hydration,
            st.snap_extents
        ),
    };
    let _ = writeln!(s, "  snapshot:   {snap}");
    let mut views = st.views.to_string();
    if !d.views.is_empty() {
        let names: Vec<String> = d.views.iter().map(|(n, m)| format!("{n} ({m})")).collect();
        let _ = write!(views, ": {}", names.join(", "));
    }
    let _ = writeln!(s, "  views:      {views}");
    let _ = writeln!(
        s,
        "  state:      {}, {} I/O errors since load",
        st.state, st.errors
    );
    let _ = write!(
        s,
        "  since load: {} written, {} destaged",
        fmt_bytes(st.written_bytes),
        fmt_bytes(st.destaged_bytes)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "journal_used=1052672 journal_size=250605568 pending=3 snapshot=active \
        preserved=12 chunks=16384 hydration=running errors=0 state=ok extents=3 snap_extents=1 \
        deferred=0 views=1 written_bytes=1048576 destaged_bytes=0";

    #[test]
    fn parses_every_key_in_order() {
        let st = Status::parse(LINE).unwrap();
        let keys: Vec<&str> = st.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, JSNAP_KEYS);
        assert_eq!(st.num("journal_used"), Some(1052672));
        assert_eq!(st.text("snapshot"), Some("active"));
        assert_eq!(st.num("snapshot"), None);
        let j = JsnapStatus::parse(LINE).unwrap();
        assert_eq!(j.pending, 3);
        assert_eq!(j.hydration, "running");
        assert_eq!(j.views, 1);
    }

    #[test]
    fn json_keeps_order_and_types() {
        let st = Status::parse("a=1 b=x c=007 d=18446744073709551616 e=-1").unwrap();
        assert_eq!(
            st.to_json(&[("name", Val::Str("p\"q".into()))]),
            r#"{"name": "p\"q", "a": 1, "b": "x", "c": 7, "d": "18446744073709551616", "e": "-1"}"#
        );
        let j: serde_json::Value =
            serde_json::from_str(&Status::parse(LINE).unwrap().to_json(&[])).unwrap();
        assert_eq!(j["journal_size"], 250605568);
        assert_eq!(j["hydration"], "running");
        assert_eq!(j.as_object().unwrap().len(), 15);
    }

    #[test]
    fn refuses_malformed_lines() {
        assert!(Status::parse("").is_err());
        assert!(Status::parse("a=1 a=2").is_err());
        assert!(Status::parse("a=1 junk").is_err());
        assert!(Status::parse("=3").is_err());
        // a view's status parses, but is not a jsnap status
        let v = Status::parse("mode=rw snapshot_active=1").unwrap();
        assert_eq!(v.text("mode"), Some("rw"));
        assert!(JsnapStatus::from_status(&v).is_err());
        // a missing key is named
        let e = JsnapStatus::parse(&LINE.replace("pending=3 ", "")).unwrap_err();
        assert!(e.contains("pending"), "{e}");
    }

    #[test]
    fn sizes_and_percentages() {
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(1023), "1023 B");
        assert_eq!(fmt_bytes(4096), "4.00 KiB");
        assert_eq!(fmt_bytes(32 << 10), "32.0 KiB");
        assert_eq!(fmt_bytes(250605568), "239 MiB");
        assert_eq!(fmt_bytes(1 << 30), "1.00 GiB");
        assert_eq!(fmt_bytes(3 << 29), "1.50 GiB");
        assert_eq!(pct(0, 0), "0.0%");
        assert_eq!(pct(1, 3), "33.3%");
        assert_eq!(pct(9999, 10000), "99.9%");
        assert_eq!(pct(10000, 10000), "100.0%");
    }

    #[test]
    fn human_report_mentions_the_numbers() {
        let st = JsnapStatus::parse(LINE).unwrap();
        let views = vec![("snap".to_string(), "rw".to_string())];
        let d = Describe {
            name: "prod",
            devnum: "253:0",
            sectors: 1 << 21,
            chunk_sectors: 64,
            table: "0 2097152 jsnap 259:0 259:1 259:2 64",
            store: true,
            views: &views,
        };
        let h = human(&d, &st);
        assert!(
            h.starts_with("prod: /dev/mapper/prod (253:0), 1.00 GiB, chunk 32.0 KiB\n"),
            "{h}"
        );
        assert!(
            h.contains("1.00 MiB of 239 MiB used (0.4%), 3 records pending"),
            "{h}"
        );
        assert!(
            h.contains("active, 12 of 16384 chunks preserved (0.1%), hydration running"),
            "{h}"
        );
        assert!(h.contains("views:      1: snap (rw)"), "{h}");
    }
}
