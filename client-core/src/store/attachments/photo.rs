//! Photos before they are stored: their size as shown, and the downscale of large ones. A phone
//! camera's 12-megapixel JPEG is 3–6 MB; at 1,600 px on the longest side it is a few hundred KB
//! and still shows every detail a grid worker photographs (a crack, a blocked exit, a form).

use std::io::{BufRead, BufReader, Cursor, Seek};

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};

use super::AttachSource;
use crate::error::{Error, Result};

/// JPEG quality of a downscaled photo.
pub const JPEG_QUALITY: u8 = 80;

/// Whether a media type is one this module reads.
pub fn is_photo(media_type: &str) -> bool {
    matches!(media_type, "image/jpeg" | "image/png")
}

/// A photo's width and height as it is shown (its EXIF orientation applied), and that
/// orientation. `None` when the bytes are not an image this build decodes: it is then attached
/// as a plain file.
pub fn inspect(source: &AttachSource) -> Option<(u32, u32, Orientation)> {
    fn read<R: BufRead + Seek>(reader: R) -> Option<(u32, u32, Orientation)> {
        let mut decoder = ImageReader::new(reader)
            .with_guessed_format()
            .ok()?
            .into_decoder()
            .ok()?;
        let (w, h) = decoder.dimensions();
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        Some(match orientation {
            Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH => (h, w, orientation),
            _ => (w, h, orientation),
        })
    }
    match source {
        AttachSource::Path(path) => read(BufReader::new(std::fs::File::open(path).ok()?)),
        AttachSource::Bytes(bytes) => read(Cursor::new(bytes.as_slice())),
    }
}

/// The photo turned upright, scaled to at most `max_side` on its longest side and encoded as
/// JPEG at [`JPEG_QUALITY`]: its bytes, width and height.
pub fn downscale(source: &AttachSource, max_side: u32) -> Result<(Vec<u8>, u32, u32)> {
    fn decode<R: BufRead + Seek>(reader: R) -> image::ImageResult<DynamicImage> {
        let mut decoder = ImageReader::new(reader)
            .with_guessed_format()?
            .into_decoder()?;
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        let mut image = DynamicImage::from_decoder(decoder)?;
        image.apply_orientation(orientation);
        Ok(image)
    }
    let decoded = match source {
        AttachSource::Path(path) => decode(BufReader::new(std::fs::File::open(path)?)),
        AttachSource::Bytes(bytes) => decode(Cursor::new(bytes.as_slice())),
    }
    .map_err(unreadable)?;
    let scaled = decoded.resize(max_side, max_side, FilterType::Triangle);
    // JPEG has no alpha channel: a PNG's transparency becomes its colours on black.
    let rgb = DynamicImage::ImageRgb8(scaled.to_rgb8());
    let mut out = Vec::new();
    rgb.write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))
        .map_err(unreadable)?;
    Ok((out, rgb.width(), rgb.height()))
}

fn unreadable(e: image::ImageError) -> Error {
    Error::Attachment(format!(
        "照片无法读取 the photo cannot be read: {e}. 可加 --original 按原文件附加 \
         attach it as it is with --original"
    ))
}
