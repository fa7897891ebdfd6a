//! Loading real files: EXIF orientation fixtures (written by Pillow, an independent encoder),
//! CMYK, and bad input crafted byte by byte (bombs, truncation, wrong content).

use std::path::{Path, PathBuf};

use dermatrack::Error;
use dermatrack::io::{LoadOptions, load_photo};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Asserts the upright quadrant picture: red top-left, green top-right, blue bottom-left,
/// white bottom-right, 48×32.
fn assert_upright(path: &Path) {
    let photo = load_photo(path, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        (photo.width(), photo.height()),
        (48, 32),
        "{}",
        path.display()
    );
    let at = |x, y| photo.pixels.get_pixel(x, y).0;
    let close = |got: [f32; 3], want: [f32; 3], corner: &str| {
        let ok = got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.15);
        assert!(
            ok,
            "{} {corner}: got {got:?}, want {want:?}",
            path.display()
        );
    };
    close(at(4, 4), [1.0, 0.0, 0.0], "top-left");
    close(at(43, 4), [0.0, 1.0, 0.0], "top-right");
    close(at(4, 27), [0.0, 0.0, 1.0], "bottom-left");
    close(at(43, 27), [1.0, 1.0, 1.0], "bottom-right");
}

#[test]
fn all_eight_exif_orientations_become_upright() {
    let dir = fixture("orientation");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jpg") {
            assert_upright(&path);
            let photo = load_photo(&path, &LoadOptions::default()).unwrap();
            seen.push(photo.exif_orientation);
        }
    }
    seen.sort();
    assert_eq!(seen, (1..=8).collect::<Vec<u8>>());
}

#[test]
fn png_exif_orientation_is_applied() {
    assert_upright(&fixture(
        "orientation/png-exif6-stored-rotated-90ccw-becomes-upright-48x32.png",
    ));
}

#[test]
fn cmyk_jpeg_is_converted_to_rgb() {
    let path = fixture("formats/cmyk-quadrants-48x32.jpg");
    let photo = load_photo(&path, &LoadOptions::default()).unwrap();
    assert_eq!(photo.source_color, "cmyk");
    assert_upright(&path);
}

fn write_tmp(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// CRC-32 (IEEE) for PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header claims `w`×`h` RGB pixels, followed by a tiny (wrong) IDAT.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

/// A real small JPEG whose frame header is patched to claim `w`×`h`: a decompression bomb's
/// shape (tiny file, enormous announced image).
fn jpeg_header_only(w: u16, h: u16) -> Vec<u8> {
    let mut bytes = std::fs::read(fixture(
        "orientation/exif1-stored-as-is-becomes-upright-48x32.jpg",
    ))
    .unwrap();
    let sof = bytes
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("baseline frame header");
    bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    bytes
}

#[test]
fn huge_dimension_headers_are_refused_before_decoding() {
    for (name, bytes) in [
        ("bomb.png", png_header_only(100_000, 100_000)),
        ("bomb.jpg", jpeg_header_only(65_000, 65_000)),
    ] {
        let (_dir, path) = write_tmp(name, &bytes);
        let err = load_photo(&path, &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{name}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(name) && msg.contains("exceeds the limit"),
            "{msg}"
        );
    }
}

#[test]
fn truncated_files_give_decode_errors() {
    let good = std::fs::read(fixture(
        "orientation/exif1-stored-as-is-becomes-upright-48x32.jpg",
    ))
    .unwrap();
    let (_d, path) = write_tmp("cut.jpg", &good[..good.len() - 200]);
    let err = load_photo(&path, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");

    let mut png = Vec::new();
    image::RgbImage::from_pixel(64, 64, image::Rgb([200, 150, 120]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let (_d2, path) = write_tmp("cut.png", &png[..png.len() / 2]);
    let err = load_photo(&path, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
}

#[test]
fn missing_files_directories_and_text_are_clear_errors() {
    let err = load_photo(Path::new("/no/such/photo.jpg"), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Read { .. }));
    assert!(err.to_string().contains("/no/such/photo.jpg"));

    let dir = tempfile::tempdir().unwrap();
    let err = load_photo(dir.path(), &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");

    let (_d, path) = write_tmp("notes.jpg", b"Patient notes, not a photo.\n");
    let err = load_photo(&path, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err}");
}

#[test]
fn oversized_files_are_refused_before_reading() {
    let (_d, path) = write_tmp("big.jpg", &vec![0u8; 4096]);
    let options = LoadOptions {
        max_file_bytes: 1024,
        ..LoadOptions::default()
    };
    let err = load_photo(&path, &options).unwrap_err();
    assert!(err.to_string().contains("above the limit"), "{err}");
}
