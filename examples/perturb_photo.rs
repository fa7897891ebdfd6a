//! Writes a perturbed copy of a photo (re-positioned, re-exposed, white-balance cast, JPEG
//! re-encoded) and optionally with a macule painted in: an AFTER photo whose truth is known.
//!
//! `cargo run --release --example perturb_photo -- IN OUT.jpg|OUT.png [--shift DX,DY] [--rotate DEG]
//!  [--scale S] [--exposure E] [--wb R,G,B] [--jpeg Q] [--macule X,Y,RADIUS_PX,OD]`

use dermatrack::io::{LoadOptions, load_photo};
use dermatrack::phantom::{InsertedMacule, Perturbation, insert_macule, perturb};

fn parse<const N: usize>(s: &str) -> Result<[f64; N], Box<dyn std::error::Error>> {
    let v: Vec<f64> = s.split(',').map(str::parse).collect::<Result<_, _>>()?;
    v.try_into()
        .map_err(|_| format!("expected {N} comma-separated numbers in {s:?}").into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (input, output) = (
        args.first().ok_or("missing IN")?,
        args.get(1).ok_or("missing OUT")?,
    );
    let mut p = Perturbation::default();
    let mut macule = None;
    let mut it = args[2..].iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--shift" => p.shift_px = parse::<2>(value)?,
            "--rotate" => p.rotation_deg = value.parse()?,
            "--scale" => p.scale = value.parse()?,
            "--exposure" => p.exposure = value.parse()?,
            "--wb" => p.white_balance = parse::<3>(value)?,
            "--jpeg" => p.jpeg_quality = Some(value.parse()?),
            "--macule" => {
                let [x, y, r, od] = parse::<4>(value)?;
                macule = Some(InsertedMacule {
                    centre: [x, y],
                    radius_px: r,
                    melanin_od: od,
                });
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let mut img = load_photo(input.as_ref(), &LoadOptions::default())?.pixels;
    if let Some(m) = &macule {
        insert_macule(&mut img, m);
    }
    let jpeg = p.jpeg_quality.take();
    let out = perturb(&img, &p)?;
    let rgb8 = image::RgbImage::from_fn(out.width(), out.height(), |x, y| {
        image::Rgb(
            out.get_pixel(x, y)
                .0
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8),
        )
    });
    if output.ends_with(".png") {
        // 8-bit PNG: quantization without JPEG's block transform and chroma subsampling.
        rgb8.save(output)?;
        return Ok(());
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(output)?);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, jpeg.unwrap_or(95))
        .encode_image(&rgb8)?;
    Ok(())
}
