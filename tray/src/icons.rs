//! Tray icons, one per session phase, embedded from `assets/`.
//!
//! # Platform-specific
//! macOS gets black-and-alpha template images, which the menu bar tints
//! for light and dark mode; Linux panels get the colour versions.

use aws_mock_metadata_tray_abi::Phase;
use tray_icon::Icon;

macro_rules! icon_bytes {
    ($name:literal) => {
        if cfg!(target_os = "macos") {
            include_bytes!(concat!("../../assets/tray-", $name, "-template.png")).as_slice()
        } else {
            include_bytes!(concat!("../../assets/tray-", $name, ".png")).as_slice()
        }
    };
}

/// Returns the icon for `phase`.
pub fn for_phase(phase: Phase) -> Icon {
    let png = match phase {
        Phase::Valid => icon_bytes!("valid"),
        Phase::ExpiringSoon => icon_bytes!("expiring"),
        Phase::WaitingForCode => icon_bytes!("waiting"),
        Phase::NoSession => icon_bytes!("none"),
    };
    decode(png)
}

fn decode(png_bytes: &[u8]) -> Icon {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder
        .read_info()
        .expect("embedded icons are valid PNG files");
    let mut rgba = vec![
        0;
        reader
            .output_buffer_size()
            .expect("embedded icons are small")
    ];
    let frame = reader
        .next_frame(&mut rgba)
        .expect("embedded icons are valid PNG files");
    rgba.truncate(frame.buffer_size());
    Icon::from_rgba(rgba, frame.width, frame.height).expect("embedded icons are RGBA")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_has_an_icon() {
        for phase in [
            Phase::Valid,
            Phase::ExpiringSoon,
            Phase::WaitingForCode,
            Phase::NoSession,
        ] {
            for_phase(phase);
        }
    }
}
