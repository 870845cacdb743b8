//! Thumbnails of photos for the record and review pages: a JPEG whose longest side is at most
//! [`SIDE`] pixels, made by the relay from the stored bytes the first time a page asks for it and
//! kept on disk under the data directory (`thumbnails/`), named by the photo's hash like the
//! photo itself, so a thumbnail never goes stale.
//!
//! Decoding runs on a blocking thread (`spawn_blocking`), at most [`AT_ONCE`] at a time, and is
//! bounded: an image larger than the relay takes, wider or taller than [`MAX_SIDE`], or needing
//! more than [`MAX_DECODE_BYTES`] of memory is refused before its pixels are decoded.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// The longest side of a thumbnail, in pixels.
pub const SIDE: u32 = 320;
/// No photo is decoded whose width or height exceeds this (a 48-megapixel phone photo is 8,000
/// pixels wide).
pub const MAX_SIDE: u32 = 12_000;
/// The memory a decoder may use for one photo.
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;
/// Thumbnails made at once (each may hold [`MAX_DECODE_BYTES`]).
pub const AT_ONCE: usize = 2;
/// JPEG quality of a thumbnail.
const QUALITY: u8 = 80;
/// The folder under the data directory.
pub const DIR: &str = "thumbnails";

/// The media types the relay makes thumbnails of.
pub fn makes(media_type: &str) -> bool {
    matches!(media_type, "image/jpeg" | "image/png")
}

#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("not a JPEG or PNG image")]
    Format,
    #[error("image of {0}×{1} pixels is too large to decode")]
    TooLarge(u32, u32),
    #[error("image cannot be decoded: {0}")]
    Decode(#[from] image::ImageError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A thumbnail of an encoded JPEG or PNG: turned the way the photo's EXIF orientation says,
/// scaled down to fit [`SIDE`] (never up), as JPEG.
pub fn make(bytes: &[u8]) -> Result<Vec<u8>, ThumbError> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    if !matches!(reader.format(), Some(ImageFormat::Jpeg | ImageFormat::Png)) {
        return Err(ThumbError::Format);
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = reader;
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    let (w, h) = decoder.dimensions();
    if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) * 4 > MAX_DECODE_BYTES {
        return Err(ThumbError::TooLarge(w, h));
    }
    let orientation = decoder.orientation()?;
    let mut img = DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    let small = if img.width() > SIDE || img.height() > SIDE {
        img.thumbnail(SIDE, SIDE)
    } else {
        img
    };
    let rgb = small.to_rgb8();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, QUALITY).encode_image(&rgb)?;
    Ok(out)
}

/// Where the thumbnail of `hash` (64 hex digits) is kept: in a folder by its first two digits,
/// so that no folder holds every thumbnail.
pub fn path(data_dir: &Path, hash: &str) -> PathBuf {
    data_dir
        .join(DIR)
        .join(hash.get(..2).unwrap_or("00"))
        .join(format!("{hash}.jpg"))
}

/// A thumbnail made before, if any.
pub async fn cached(data_dir: &Path, hash: &str) -> Option<Vec<u8>> {
    tokio::fs::read(path(data_dir, hash)).await.ok()
}

/// Keeps a thumbnail: written beside its place, then renamed into it, so a reader never sees
/// half of one. A failure only costs making it again next time.
pub async fn keep(data_dir: &Path, hash: &str, jpeg: &[u8]) {
    let to = path(data_dir, hash);
    let tmp = to.with_extension(format!("tmp-{}", uuid::Uuid::now_v7()));
    let written = async {
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(&tmp, jpeg).await?;
        tokio::fs::rename(&tmp, &to).await
    }
    .await;
    if let Err(e) = written {
        tracing::warn!("thumbnail of {hash} not kept: {e}");
        let _ = tokio::fs::remove_file(&tmp).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use image::{ImageEncoder, RgbImage};

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    /// The CRC of a PNG chunk (its type and data).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn test_a_thumbnail_is_a_jpeg_whose_longest_side_is_320() {
        let thumb = make(&png(1600, 900)).unwrap();
        assert_eq!(&thumb[..2], &[0xFF, 0xD8], "a JPEG");
        let img = image::load_from_memory(&thumb).unwrap();
        assert_eq!((img.width(), img.height()), (320, 180));
        let small = image::load_from_memory(&make(&png(100, 40)).unwrap()).unwrap();
        assert_eq!(
            (small.width(), small.height()),
            (100, 40),
            "never scaled up"
        );
    }

    #[test]
    fn test_absurd_dimensions_and_other_formats_are_refused() {
        // A PNG header announcing 100,000 × 100,000 pixels: refused before any pixel is decoded.
        let mut huge = png(1, 1);
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&huge[12..29]);
        huge[29..33].copy_from_slice(&crc.to_be_bytes());
        let refused = make(&huge);
        assert!(
            matches!(
                refused,
                Err(ThumbError::TooLarge(..) | ThumbError::Decode(image::ImageError::Limits(_)))
            ),
            "{refused:?}"
        );
        assert!(matches!(
            make(b"%PDF-1.7 not an image"),
            Err(ThumbError::Format)
        ));
    }
}
