//! The demo sound: a quiet continuous 1 kHz tone with a loud 100 ms beep of the same tone at
//! the start of every second, in step with the picture's flash square, so lip-sync can be
//! checked by eye and ear.

use std::f32::consts::TAU;

use super::pattern::FLASH;

const TONE_HZ: u64 = 1000;
/// About -30 dBFS: audible, not tiring.
const BED_LEVEL: f32 = 0.03;
/// About -6 dBFS.
const BEEP_LEVEL: f32 = 0.5;
/// Beep edges ramp over 5 ms so they do not click.
const RAMP_MS: u64 = 5;

/// Generates the tone sample by sample from an absolute sample index, so any stretch of it can
/// be rendered on its own and the phase never drifts.
#[derive(Debug, Clone)]
pub(crate) struct Tone {
    sample_rate: u64,
    beep_samples: u64,
    ramp_samples: u64,
}

impl Tone {
    pub fn new(sample_rate: u32) -> Self {
        let sample_rate = u64::from(sample_rate);
        Tone {
            sample_rate,
            beep_samples: sample_rate * FLASH.as_millis() as u64 / 1000,
            ramp_samples: (sample_rate * RAMP_MS / 1000).max(1),
        }
    }

    /// The sample at absolute index `n` (sample 0 is media time 0).
    pub fn sample(&self, n: u64) -> f32 {
        // Phase from integers: exact for every n, no float error growing with time.
        let phase = (n * TONE_HZ % self.sample_rate) as f32 / self.sample_rate as f32;
        let into_second = n % self.sample_rate;
        let level = if into_second < self.beep_samples {
            let edge = into_second.min(self.beep_samples - 1 - into_second);
            let ramp = (edge as f32 / self.ramp_samples as f32).min(1.0);
            BED_LEVEL + (BEEP_LEVEL - BED_LEVEL) * ramp
        } else {
            BED_LEVEL
        };
        level * (TAU * phase).sin()
    }

    /// Fills `out` with the samples from absolute index `first` on.
    pub fn fill(&self, first: u64, out: &mut [f32]) {
        for (offset, sample) in out.iter_mut().enumerate() {
            *sample = self.sample(first + offset as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peak(tone: &Tone, from: u64, to: u64) -> f32 {
        (from..to).map(|n| tone.sample(n).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn beep_is_loud_for_the_first_100_ms_of_each_second() {
        let tone = Tone::new(48_000);
        // Inside the beep (away from the ramps) the peak is the beep level.
        assert!((peak(&tone, 48_000 + 480, 48_000 + 4_000) - BEEP_LEVEL).abs() < 0.01);
        // After it, only the bed.
        assert!((peak(&tone, 48_000 + 5_000, 48_000 + 40_000) - BED_LEVEL).abs() < 0.001);
        // 1 kHz at 48 kHz: 48 samples a period, so n = 12 (mod 48) is a crest, however late.
        assert!((tone.sample(5_004) - BED_LEVEL).abs() < 1e-6);
        assert!((tone.sample(5_004 + 48 * 100_000_000) - BED_LEVEL).abs() < 1e-6);
        assert!(
            tone.sample(5_028).abs() > BED_LEVEL - 1e-6,
            "trough at 36 (mod 48)"
        );
    }
}
