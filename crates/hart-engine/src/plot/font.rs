//! The one font plots use, read from a TTF file and handed to plotters'
//! ab_glyph renderer: no fontconfig, no system font search, identical output
//! on every machine that has the file.

use std::path::PathBuf;
use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::error::{HartError, Result};

/// Debian's `fonts-dejavu-core` (installed by scripts/setup.sh).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The family name charts ask plotters for.
pub const FAMILY: &str = "sans-serif";

/// Registers the font once per process; `HART_FONT` names another TTF file.
pub fn ensure() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let path = std::env::var_os("HART_FONT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_FONT));
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "{}: {e} (plots need a TTF font: install fonts-dejavu-core or set HART_FONT)",
                    path.display()
                )
            })?;
            // plotters keeps fonts for the life of the process; one small leak per process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            for style in [FontStyle::Normal, FontStyle::Bold] {
                plotters::style::register_font(FAMILY, style, bytes)
                    .map_err(|_| format!("{}: not a TrueType/OpenType font", path.display()))?;
            }
            Ok(())
        })
        .clone()
        .map_err(HartError::Invalid)
}
