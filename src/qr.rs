//! QR codes of short URLs, as SVG or PNG.
//!
//! `fast_qr` builds the matrix and the SVG; PNG is the same matrix scaled to whole
//! pixels per module and encoded with `png`, which avoids pulling in a vector
//! rasteriser just to draw squares.

use fast_qr::convert::{Builder, svg::SvgBuilder};
use fast_qr::qr::QRBuilder;

pub const SIZE_MIN: u32 = 64;
pub const SIZE_MAX: u32 = 2048;
pub const SIZE_DEFAULT: u32 = 256;
/// Modules of white border the QR specification asks for.
const QUIET_ZONE: usize = 4;

#[derive(Debug, thiserror::Error)]
#[error("cannot render QR code: {0}")]
pub struct QrError(String);

fn matrix(text: &str) -> Result<fast_qr::QRCode, QrError> {
    QRBuilder::new(text)
        .ecl(fast_qr::ECL::M)
        .build()
        .map_err(|e| QrError(format!("{e:?}")))
}

pub fn svg(text: &str, size: u32) -> Result<String, QrError> {
    let qr = matrix(text)?;
    let svg = SvgBuilder::default().margin(QUIET_ZONE).to_str(&qr);
    Ok(svg.replacen("<svg ", &format!("<svg width=\"{size}\" height=\"{size}\" "), 1))
}

/// A grayscale PNG exactly `size` pixels wide and high. Modules are whole pixels
/// wide when they fit (the rest is quiet zone, around the code); on a size smaller
/// than the code has modules, pixels are sampled from the module grid.
pub fn png(text: &str, size: u32) -> Result<Vec<u8>, QrError> {
    let qr = matrix(text)?;
    let modules = qr.size + 2 * QUIET_ZONE;
    let px = size as usize;
    let scale = px / modules;
    let dark = |x: usize, y: usize| -> bool {
        // (x, y) in modules, quiet zone included.
        let (Some(mx), Some(my)) = (x.checked_sub(QUIET_ZONE), y.checked_sub(QUIET_ZONE)) else {
            return false;
        };
        mx < qr.size && my < qr.size && qr.data[my * qr.size + mx].value()
    };
    let module_of = |p: usize| -> Option<usize> {
        if scale == 0 {
            return Some(p * modules / px);
        }
        let margin = (px - modules * scale) / 2;
        let m = p.checked_sub(margin)? / scale;
        (m < modules).then_some(m)
    };
    let mut pixels = vec![255u8; px * px];
    for y in 0..px {
        let Some(my) = module_of(y) else { continue };
        for x in 0..px {
            if module_of(x).is_some_and(|mx| dark(mx, my)) {
                pixels[y * px + x] = 0;
            }
        }
    }
    let mut out = Vec::new();
    let side = u32::try_from(px).map_err(|_| QrError("image too large".into()))?;
    let mut enc = png::Encoder::new(&mut out, side, side);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| QrError(e.to_string()))?;
    w.write_image_data(&pixels).map_err(|e| QrError(e.to_string()))?;
    w.finish().map_err(|e| QrError(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_signature_and_size() {
        let bytes = png("http://127.0.0.1:8080/abc1234", 256).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        assert!(reader.info().width >= 256);
    }

    /// Issue 23: `size` is the image's width, exactly (259 and 518 before), also
    /// below the code's own module count.
    #[test]
    fn png_is_exactly_the_size_asked() {
        for size in [SIZE_MIN, 100, SIZE_DEFAULT, 333, 512, SIZE_MAX] {
            let bytes = png("http://127.0.0.1:8080/abc1234", size).unwrap();
            let reader = png::Decoder::new(std::io::Cursor::new(bytes))
                .read_info()
                .unwrap();
            assert_eq!(
                (reader.info().width, reader.info().height),
                (size, size),
                "{size}"
            );
        }
        let long = format!("https://sho.rt/{}", "x".repeat(200));
        let bytes = png(&long, SIZE_MIN).unwrap();
        let reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        assert_eq!(reader.info().width, SIZE_MIN);
    }

    #[test]
    fn svg_is_svg() {
        let s = svg("http://127.0.0.1:8080/abc1234", 300).unwrap();
        assert!(s.starts_with("<svg"));
        assert!(s.contains("width=\"300\""));
    }
}
