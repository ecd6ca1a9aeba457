//! Sizes as people write them (`3G`, `512M`, `10GiB`, `4096`), read the way `qemu-img create`
//! reads them, for the install's `--disk-size` and the image definition's `vm.disk_size`.

use anyhow::{Context, Result, bail};

/// `3G`, `512M`, `10GiB` or a byte count, as `qemu-img create` takes it: K, M, G and T are
/// powers of 1024, in any case, with or without a trailing `B` or `iB`.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits]
        .parse()
        .with_context(|| format!("`{text}` is not a size like 3G or 512M"))?;
    let unit = t[digits..].trim();
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => bail!("`{text}`: unknown size unit `{unit}` (use K, M, G or T)"),
    };
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .with_context(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_like_qemu_img() {
        for (text, bytes) in [
            ("3G", 3 << 30),
            ("512M", 512 << 20),
            ("512MiB", 512 << 20),
            ("10GiB", 10 << 30),
            ("2gb", 2 << 30),
            ("1 T", 1 << 40),
            ("4096", 4096),
            ("4096B", 4096),
            (" 8K ", 8 << 10),
        ] {
            assert_eq!(parse_size(text).unwrap(), bytes, "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        for (text, message) in [
            ("3X", "unknown size unit `X`"),
            ("3PiB", "unknown size unit `PiB`"),
            ("G", "not a size like 3G"),
            ("", "not a size like 3G"),
            ("-1G", "not a size like 3G"),
            ("20000000T", "too large"),
            ("99999999999999999999", "not a size like 3G"),
        ] {
            let err = format!("{:#}", parse_size(text).unwrap_err());
            assert!(err.contains(message), "{text}: {err}");
        }
    }
}
