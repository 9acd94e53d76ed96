//! Table lines of the two targets: built for `create` and `view`, parsed
//! back from `dmsetup table`.  Pure: no I/O.  The feature grammar and the
//! chunk-size rule are the module's own (`rust/logic/args.rs`).

use jsnap_logic::args;

/// Feature options of `create`, each mapped to a feature argument.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeatureOpts {
    pub format: bool,
    pub high_watermark: Option<u32>,
    pub low_watermark: Option<u32>,
    pub destage_batch: Option<u32>,
    pub hydrate_batch: Option<u32>,
    pub no_destage: bool,
    pub relocated: bool,
    pub bypass: Option<u32>,
    pub compact: Option<u32>,
}

impl FeatureOpts {
    /// The feature arguments, without their count, in a fixed order.
    pub fn tokens(&self) -> Vec<String> {
        let mut t = Vec::new();
        if self.format {
            t.push("format".to_string());
        }
        for (name, v) in [
            ("high_watermark", self.high_watermark),
            ("low_watermark", self.low_watermark),
            ("destage_batch", self.destage_batch),
            ("hydrate_batch", self.hydrate_batch),
            ("bypass", self.bypass),
            ("compact", self.compact),
        ] {
            if let Some(v) = v {
                t.push(name.to_string());
                t.push(v.to_string());
            }
        }
        if self.no_destage {
            t.push("no_destage".to_string());
        }
        if self.relocated {
            t.push("relocated".to_string());
        }
        t
    }

    /// Checks the values with the module's grammar; the error is the
    /// module's reason.
    pub fn validate(&self) -> Result<(), String> {
        let tokens = self.tokens();
        let mut argv: Vec<String> = Vec::new();
        if !tokens.is_empty() {
            argv.push(tokens.len().to_string());
            argv.extend(tokens);
        }
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        args::parse_features(&refs)
            .map(|_| ())
            .map_err(|e| e.msg().to_string_lossy().into_owned())
    }
}

/// Checks a chunk size (sectors) as the module does: a power of two from
/// 8 to 1048576.
pub fn check_chunk(chunk: u64) -> Result<u32, String> {
    args::parse_chunk_sectors(&chunk.to_string())
        .map_err(|_| format!("chunk size {chunk} is not a power of two from 8 to 1048576 sectors"))
}

/// The parameters of a `jsnap` target (everything after the target name).
pub fn jsnap_params(
    prod: &str,
    journal: &str,
    store: Option<&str>,
    chunk: u32,
    feat: &FeatureOpts,
) -> String {
    let mut s = format!("{prod} {journal} {} {chunk}", store.unwrap_or("-"));
    let t = feat.tokens();
    if !t.is_empty() {
        s.push_str(&format!(" {} {}", t.len(), t.join(" ")));
    }
    s
}

/// The parameters of a `jsnap-view` target.
pub fn view_params(jsnap_devnum: &str, mode: &str) -> String {
    format!("{jsnap_devnum} {mode}")
}

/// A `jsnap` table line's parameters, as `dmsetup table` prints them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsnapParams {
    pub prod: String,
    pub journal: String,
    /// None for `-`
    pub store: Option<String>,
    pub chunk: u32,
    pub features: Vec<String>,
}

impl JsnapParams {
    pub fn parse(params: &str) -> Result<JsnapParams, String> {
        let t: Vec<&str> = params.split_ascii_whitespace().collect();
        if t.len() < 4 {
            return Err(format!("jsnap table '{params}' has fewer than 4 arguments"));
        }
        let chunk = args::parse_chunk_sectors(t[3])
            .map_err(|_| format!("jsnap table '{params}' has a bad chunk size"))?;
        args::parse_features(&t[4..])
            .map_err(|e| format!("jsnap table '{params}': {}", e.msg().to_string_lossy()))?;
        Ok(JsnapParams {
            prod: t[0].to_string(),
            journal: t[1].to_string(),
            store: (t[2] != "-").then(|| t[2].to_string()),
            chunk,
            features: t
                .get(5..)
                .unwrap_or_default()
                .iter()
                .map(|s| s.to_string())
                .collect(),
        })
    }
}

/// A `jsnap-view` table line's parameters: (jsnap device, mode).
pub fn parse_view_params(params: &str) -> Result<(String, String), String> {
    let t: Vec<&str> = params.split_ascii_whitespace().collect();
    match t.as_slice() {
        [dev, mode] => Ok((dev.to_string(), mode.to_string())),
        _ => Err(format!("jsnap-view table '{params}' is not '<dev> <mode>'")),
    }
}

/// Checks a dm device name the way the kernel and dmsetup accept it.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("device name is empty".to_string());
    }
    if name.len() > 127 {
        return Err(format!("device name '{name}' is longer than 127 bytes"));
    }
    if name.contains('/') || name == "." || name == ".." || name == "control" {
        return Err(format!("'{name}' is not a usable device-mapper name"));
    }
    if name.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "device name '{name}' contains spaces or control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(check_chunk(8), Ok(8));
        assert_eq!(check_chunk(64), Ok(64));
        assert_eq!(check_chunk(1 << 20), Ok(1 << 20));
        for bad in [0, 1, 4, 7, 12, 96, 1 << 21, u64::MAX] {
            let e = check_chunk(bad).unwrap_err();
            assert!(
                e.contains(&bad.to_string()) && e.contains("power of two"),
                "{e}"
            );
        }
    }

    #[test]
    fn builds_table_lines_the_module_parses() {
        let none = FeatureOpts::default();
        assert_eq!(
            jsnap_params("/dev/a", "/dev/pmem0", Some("/dev/b"), 64, &none),
            "/dev/a /dev/pmem0 /dev/b 64"
        );
        assert_eq!(
            jsnap_params("/dev/a", "/dev/pmem0", None, 8, &none),
            "/dev/a /dev/pmem0 - 8"
        );
        let f = FeatureOpts {
            format: true,
            high_watermark: Some(80),
            low_watermark: Some(20),
            hydrate_batch: Some(32),
            no_destage: true,
            bypass: Some(2048),
            compact: Some(0),
            ..Default::default()
        };
        let p = jsnap_params("259:0", "259:1", Some("259:2"), 128, &f);
        assert_eq!(
            p,
            "259:0 259:1 259:2 128 12 format high_watermark 80 low_watermark 20 hydrate_batch 32 bypass 2048 compact 0 no_destage"
        );
        assert!(f.validate().is_ok());
        // the module's grammar accepts what was built, with the same values
        let toks: Vec<&str> = p.split(' ').collect();
        let parsed = args::parse_features(&toks[4..]).unwrap();
        assert!(parsed.format && parsed.no_destage && !parsed.relocated);
        assert_eq!(parsed.bypass, 2048);
        assert_eq!(parsed.compact, 0);
        let bad = FeatureOpts { bypass: Some(7), ..Default::default() };
        assert_eq!(bad.validate(), Err("Invalid bypass: must be 8..1048576 sectors".to_string()));
        let bad = FeatureOpts { compact: Some(91), ..Default::default() };
        assert_eq!(bad.validate(), Err("Invalid compact: must be 0..90 (percent)".to_string()));
        assert_eq!(
            (
                parsed.high_watermark,
                parsed.low_watermark,
                parsed.hydrate_batch
            ),
            (80, 20, 32)
        );
        let back = JsnapParams::parse(&p).unwrap();
        assert_eq!(back.store.as_deref(), Some("259:2"));
        assert_eq!(back.chunk, 128);
        assert_eq!(back.features.len(), 12);
        assert_eq!(view_params("253:4", "mirror"), "253:4 mirror");
    }

    #[test]
    fn refuses_bad_features_with_the_module_reason() {
        let f = FeatureOpts {
            high_watermark: Some(30),
            low_watermark: Some(30),
            ..Default::default()
        };
        assert_eq!(
            f.validate().unwrap_err(),
            "low_watermark must be below high_watermark"
        );
        let f = FeatureOpts {
            destage_batch: Some(0),
            ..Default::default()
        };
        assert!(f.validate().unwrap_err().contains("destage_batch"));
        let f = FeatureOpts {
            hydrate_batch: Some(2000),
            ..Default::default()
        };
        assert!(f.validate().unwrap_err().contains("hydrate_batch"));
        let f = FeatureOpts {
            high_watermark: Some(101),
            ..Default::default()
        };
        assert!(f.validate().unwrap_err().contains("high_watermark"));
        assert!(FeatureOpts {
            relocated: true,
            ..Default::default()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn parses_table_echoes() {
        let p = JsnapParams::parse("259:0 259:1 - 64").unwrap();
        assert_eq!(p.store, None);
        assert!(p.features.is_empty());
        let p = JsnapParams::parse("259:0 259:1 259:2 4096 1 no_destage").unwrap();
        assert_eq!(p.features, vec!["no_destage"]);
        assert!(JsnapParams::parse("259:0 259:1 259:2").is_err());
        assert!(JsnapParams::parse("259:0 259:1 259:2 12").is_err());
        assert_eq!(
            parse_view_params("253:0 ro").unwrap(),
            ("253:0".into(), "ro".into())
        );
        assert!(parse_view_params("253:0").is_err());
    }

    #[test]
    fn names() {
        assert!(check_name("prod").is_ok());
        assert!(check_name("a-b_c.1").is_ok());
        for bad in ["", "a/b", "..", "control", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&"x".repeat(128)).is_err());
    }
}
