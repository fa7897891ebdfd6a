//! Stage 1: read a photo from disk into a [`Photo`].
//!
//! Why a stage of its own: clinical photo sets arrive from cameras, phones, DICOM exports and
//! scanners, and every one of them has a way to go wrong. This stage turns a path into upright,
//! gamma-encoded sRGB pixels in `[0, 1]` (16-bit precision is kept), or into one typed
//! [`Error`] that names the file:
//!
//! * the format is judged by content, never by the file name (a text file named `.jpg` is
//!   refused as "not a supported image");
//! * the header's pixel count is checked against [`LoadOptions::max_pixels`] *before* any pixel
//!   is decoded, so a decompression bomb costs nothing;
//! * a JPEG without its end-of-image marker is refused as truncated (some decoders silently
//!   fill the missing part with gray, which would then be measured as skin);
//! * the EXIF orientation (tags 1–8, JPEG/PNG/TIFF) is applied, so the face is upright and the
//!   subject's left stays the subject's left;
//! * grayscale photos are refused: melanin and hemoglobin are separated by color. CMYK JPEGs are
//!   converted to RGB by the decoder and accepted (reported in [`Photo::source_color`]).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageFormat, ImageReader, Rgb32FImage};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Limits applied while loading. Construct with `LoadOptions::default()` and adjust fields.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Largest accepted width × height, checked from the header before decoding.
    /// Default: 100 megapixels (a 12-MP clinical camera frame is 12 million; a
    /// 100-MP medium-format back is the largest realistic source).
    pub max_pixels: u64,
    /// Smallest accepted side length in pixels. Default: 32.
    pub min_side: u32,
    /// Largest accepted file size in bytes. Default: 512 MiB.
    pub max_file_bytes: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_pixels: 100_000_000,
            min_side: 32,
            max_file_bytes: 512 << 20,
        }
    }
}

/// An upright photo in gamma-encoded sRGB, ready for quality checks.
#[derive(Debug, Clone)]
pub struct Photo {
    /// Where it was read from.
    pub path: PathBuf,
    /// sha256 of the file's bytes (hex), equal to `sha256sum FILE`.
    pub sha256: String,
    /// Container format: "jpeg", "png" or "tiff".
    pub format: &'static str,
    /// Bits per channel of the stored samples (8 or 16; 32 for float TIFF).
    pub bits_per_channel: u8,
    /// The stored color model, e.g. "rgb", "rgba", "cmyk".
    pub source_color: String,
    /// The EXIF orientation tag that was applied (1 = already upright).
    pub exif_orientation: u8,
    /// Upright pixels, sRGB-encoded, each channel in `[0, 1]`.
    pub pixels: Rgb32FImage,
}

impl Photo {
    /// Width of the upright image in pixels.
    pub fn width(&self) -> u32 {
        self.pixels.width()
    }

    /// Height of the upright image in pixels.
    pub fn height(&self) -> u32 {
        self.pixels.height()
    }

    /// Wraps pixels that did not come from a file (phantoms, tests, derived images).
    ///
    /// The sha256 is computed over the raw little-endian `f32` samples so that it still
    /// identifies the content.
    pub fn from_pixels(path: impl Into<PathBuf>, pixels: Rgb32FImage) -> Photo {
        let mut hasher = Sha256::new();
        for v in pixels.as_raw() {
            hasher.update(v.to_le_bytes());
        }
        Photo {
            path: path.into(),
            sha256: hex(&hasher.finalize()),
            format: "memory",
            bits_per_channel: 32,
            source_color: "rgb".into(),
            exif_orientation: 1,
            pixels,
        }
    }
}

/// Reads, checks and decodes one photo.
pub fn load_photo(path: &Path, options: &LoadOptions) -> Result<Photo> {
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.is_dir() {
        return Err(Error::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other("is a directory, expected an image file"),
        });
    }
    if meta.len() > options.max_file_bytes {
        return Err(Error::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!(
                "file is {} bytes, above the limit of {} bytes",
                meta.len(),
                options.max_file_bytes
            )),
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    decode_photo(path, &bytes, options)
}

/// Decodes a photo already in memory; `path` is used for naming only.
pub fn decode_photo(path: &Path, bytes: &[u8], options: &LoadOptions) -> Result<Photo> {
    let sha256 = hex(&Sha256::digest(bytes));
    let decode_err = |e: image::ImageError| Error::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if bytes.is_empty() {
        return Err(Error::UnsupportedFormat {
            path: path.to_path_buf(),
            found: ", found an empty file".into(),
        });
    }

    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let format = match reader.format() {
        Some(ImageFormat::Jpeg) => "jpeg",
        Some(ImageFormat::Png) => "png",
        Some(ImageFormat::Tiff) => "tiff",
        other => {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                found: other.map(|f| format!(", found {f:?}")).unwrap_or_default(),
            });
        }
    };
    if format == "jpeg" && !jpeg_has_end_marker(bytes) {
        return Err(Error::Decode {
            path: path.to_path_buf(),
            message: "truncated JPEG: the end-of-image marker is missing".into(),
        });
    }

    // Bytes the decoder may allocate: the largest accepted image at 16-bit RGBA plus headroom.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(
        options
            .max_pixels
            .saturating_mul(8)
            .saturating_add(64 << 20),
    );
    reader.limits(limits);

    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > options.max_pixels {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            pixels,
            limit: options.max_pixels,
        });
    }
    if width.min(height) < options.min_side {
        return Err(Error::TooSmall {
            path: path.to_path_buf(),
            width,
            height,
            min: options.min_side,
        });
    }

    let original = decoder.original_color_type();
    // The JPEG decoder converts CMYK/YCCK to RGB and reports RGB; the frame header still says 4.
    let source_color = if format == "jpeg" && jpeg_component_count(bytes) == Some(4) {
        "cmyk".to_string()
    } else {
        color_name(original)
    };
    if matches!(
        original,
        ExtendedColorType::L1
            | ExtendedColorType::L2
            | ExtendedColorType::L4
            | ExtendedColorType::L8
            | ExtendedColorType::L16
            | ExtendedColorType::La1
            | ExtendedColorType::La2
            | ExtendedColorType::La4
            | ExtendedColorType::La8
            | ExtendedColorType::La16
            | ExtendedColorType::A8
    ) {
        return Err(Error::NotColor {
            path: path.to_path_buf(),
            color: source_color,
        });
    }
    let bits_per_channel = match decoder.color_type() {
        image::ColorType::Rgb16 | image::ColorType::Rgba16 => 16,
        image::ColorType::Rgb32F | image::ColorType::Rgba32F => 32,
        _ => 8,
    };
    // A missing or unreadable EXIF block means "upright": that is what viewers assume too.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);

    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    image.apply_orientation(orientation);

    Ok(Photo {
        path: path.to_path_buf(),
        sha256,
        format,
        bits_per_channel,
        source_color,
        exif_orientation: orientation.to_exif(),
        pixels: image.into_rgb32f(),
    })
}

/// True when a JPEG stream ends with EOI (`FF D9`), allowing trailing padding bytes that some
/// cameras append.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Number of color components in the first JPEG frame header (SOF0–SOF15 except DHT/JPG/DAC).
fn jpeg_component_count(bytes: &[u8]) -> Option<u8> {
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        let is_sof = (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker);
        if is_sof {
            return bytes.get(i + 9).copied();
        }
        if marker == 0xDA {
            return None; // start of scan before any frame header
        }
        i += 2 + len;
    }
    None
}

fn color_name(color: ExtendedColorType) -> String {
    match color {
        ExtendedColorType::Rgb8 | ExtendedColorType::Rgb16 | ExtendedColorType::Rgb32F => "rgb",
        ExtendedColorType::Rgba8 | ExtendedColorType::Rgba16 | ExtendedColorType::Rgba32F => "rgba",
        ExtendedColorType::Cmyk8 | ExtendedColorType::Cmyk16 => "cmyk",
        ExtendedColorType::L8 | ExtendedColorType::L16 | ExtendedColorType::L1 => "grayscale",
        ExtendedColorType::La8 | ExtendedColorType::La16 | ExtendedColorType::La1 => {
            "grayscale with alpha"
        }
        other => return format!("{other:?}").to_lowercase(),
    }
    .to_string()
}

/// Lower-case hex encoding.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// sha256 of a file's content as lower-case hex, streaming (models can be large).
pub fn sha256_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb, RgbImage};

    fn encode_png16(w: u32, h: u32) -> Vec<u8> {
        let mut data = Vec::with_capacity((w * h * 6) as usize);
        for y in 0..h {
            for x in 0..w {
                // A value that 8 bits cannot represent: 1000/65535.
                for c in [1000u16, (x * 1000) as u16, (y * 1000) as u16] {
                    data.extend_from_slice(&c.to_be_bytes());
                }
            }
        }
        let mut out = Vec::new();
        // PngEncoder wants native-endian u16 samples as bytes.
        let native: Vec<u8> = data
            .chunks(2)
            .flat_map(|c| u16::from_be_bytes([c[0], c[1]]).to_ne_bytes())
            .collect();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&native, w, h, ExtendedColorType::Rgb16)
            .unwrap();
        out
    }

    fn test_rgb(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 128]))
    }

    #[test]
    fn png16_keeps_16_bit_precision() {
        let bytes = encode_png16(40, 40);
        let photo = decode_photo(Path::new("a.png"), &bytes, &LoadOptions::default()).unwrap();
        assert_eq!(photo.bits_per_channel, 16);
        let p = photo.pixels.get_pixel(0, 0);
        assert!((p[0] - 1000.0 / 65535.0).abs() < 1e-6, "got {}", p[0]);
    }

    #[test]
    fn tiff_and_png8_decode() {
        for format in [ImageFormat::Tiff, ImageFormat::Png, ImageFormat::Jpeg] {
            let mut out = Cursor::new(Vec::new());
            test_rgb(48, 40).write_to(&mut out, format).unwrap();
            let photo =
                decode_photo(Path::new("x"), out.get_ref(), &LoadOptions::default()).unwrap();
            assert_eq!((photo.width(), photo.height()), (48, 40), "{format:?}");
            assert_eq!(photo.bits_per_channel, 8);
        }
    }

    #[test]
    fn sha256_is_of_file_bytes() {
        let bytes = encode_png16(40, 40);
        let photo = decode_photo(Path::new("a.png"), &bytes, &LoadOptions::default()).unwrap();
        assert_eq!(photo.sha256, hex(&Sha256::digest(&bytes)));
        assert_eq!(photo.sha256.len(), 64);
    }

    #[test]
    fn grayscale_is_refused_clearly() {
        let mut out = Cursor::new(Vec::new());
        image::GrayImage::new(40, 40)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        let err =
            decode_photo(Path::new("g.png"), out.get_ref(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::NotColor { .. }), "{err}");
        assert!(err.to_string().contains("g.png"));
    }

    #[test]
    fn tiny_images_are_refused() {
        let mut out = Cursor::new(Vec::new());
        test_rgb(8, 8).write_to(&mut out, ImageFormat::Png).unwrap();
        let err =
            decode_photo(Path::new("t.png"), out.get_ref(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::TooSmall { .. }), "{err}");
    }

    #[test]
    fn pixel_limit_is_checked_before_decoding() {
        let mut out = Cursor::new(Vec::new());
        test_rgb(100, 100)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        let options = LoadOptions {
            max_pixels: 9_999,
            ..LoadOptions::default()
        };
        let err = decode_photo(Path::new("big.png"), out.get_ref(), &options).unwrap_err();
        match err {
            Error::TooLarge { pixels, limit, .. } => assert_eq!((pixels, limit), (10_000, 9_999)),
            other => panic!("expected TooLarge, got {other}"),
        }
    }

    #[test]
    fn jpeg_end_marker_detection() {
        let mut out = Cursor::new(Vec::new());
        test_rgb(64, 64)
            .write_to(&mut out, ImageFormat::Jpeg)
            .unwrap();
        let bytes = out.into_inner();
        assert!(jpeg_has_end_marker(&bytes));
        let cut = &bytes[..bytes.len() * 2 / 3];
        let err = decode_photo(Path::new("cut.jpg"), cut, &LoadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn non_images_and_empty_files_are_refused_by_content() {
        for (bytes, what) in [
            (&b"hello, I am text"[..], "text"),
            (&b""[..], "empty"),
            (&b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"[..], "gif"),
        ] {
            let err = decode_photo(Path::new("x.jpg"), bytes, &LoadOptions::default()).unwrap_err();
            assert!(
                matches!(err, Error::UnsupportedFormat { .. }),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn from_pixels_hash_depends_on_content() {
        let a = Photo::from_pixels("a", Rgb32FImage::new(4, 4));
        let mut img = Rgb32FImage::new(4, 4);
        img.put_pixel(1, 1, Rgb([0.5, 0.5, 0.5]));
        let b = Photo::from_pixels("b", img);
        assert_ne!(a.sha256, b.sha256);
    }
}
