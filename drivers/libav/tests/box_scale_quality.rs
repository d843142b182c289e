//! The GPU scaler's box filter (`box_scale_reference` computes its exact bytes; the GPU check in
//! appliance/transcode/tests/gpu_hardware.rs proves that) against swscale's bicubic, the CPU
//! ladder's default, on camera-like content: ffmpeg's `testsrc2` (text, sharp edges, gradients)
//! at 1280x720, scaled to the default ladder's smaller rungs.

use corecast_libav::{
    ScaleFilter, Scaler, VideoDecoder, VideoDecoderSettings, box_scale_reference,
};
use media::TrackConfig;
use testmedia::{TempDir, TestSource};

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let squared: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = squared / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

#[test]
fn box_scaling_is_close_to_swscale_bicubic_on_camera_like_content() {
    let dir = TempDir::new("box-scale-quality");
    let media = TestSource::new(1280, 720, 1).make(dir.path());
    let mut decoder = VideoDecoder::new(
        &TrackConfig::Avc(media.video.clone()),
        VideoDecoderSettings { threads: 1 },
    )
    .expect("decoder");
    let targets = [(854u32, 480u32), (640, 360), (426, 240)];
    let mut bicubic: Vec<Scaler> = targets
        .iter()
        .map(|&t| Scaler::new((1280, 720), t, ScaleFilter::Bicubic).expect("swscale"))
        .collect();
    let mut worst = [f64::INFINITY; 3];
    let mut pictures = 0;
    let mut compare = |decoder: &mut VideoDecoder| {
        while let Some(frame) = decoder.poll_frame().expect("poll") {
            pictures += 1;
            let luma = frame.planes[0];
            let stride = frame.strides[0];
            for (index, &(w, h)) in targets.iter().enumerate() {
                let (w, h) = (w as usize, h as usize);
                let mut boxed = vec![0u8; w * h];
                box_scale_reference(luma, (1280, 720, stride), 1, &mut boxed, (w, h, w));
                let scaled = bicubic[index].scale(&frame).expect("swscale");
                let swscale: Vec<u8> = (0..h)
                    .flat_map(|row| scaled.planes[0][row * scaled.strides[0]..][..w].to_vec())
                    .collect();
                worst[index] = worst[index].min(psnr(&boxed, &swscale));
            }
        }
    };
    for unit in media.video_units() {
        decoder.submit(&unit).expect("submit");
        compare(&mut decoder);
    }
    decoder.flush().expect("flush");
    compare(&mut decoder);
    assert!(pictures > 0);
    for (&(w, h), psnr) in targets.iter().zip(worst) {
        eprintln!("1280x720 -> {w}x{h}: box against bicubic, worst luma PSNR {psnr:.1} dB");
        // Two sound resamplers of the same picture differ only in sharpness; a wrong offset,
        // a swapped plane or a broken average would be far below this.
        assert!(psnr > 30.0, "{w}x{h}: {psnr:.1} dB");
    }
}
