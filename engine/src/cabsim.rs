//! A physically motivated guitar speaker and cabinet, rendered to an impulse response for the cab pedal.
//!
//! A close-miked guitar cabinet is, to a good approximation, a linear minimum-phase system plus a few delayed
//! reflections, and each part of its response has a physical cause with a known shape:
//!
//! 1. **Low end: the driver in its box.** Below its resonance the cone's acceleration — and with it the radiated
//!    pressure — falls at 12 dB/octave: a second-order high-pass at the box resonance `fc = fs·√(1 + Vas/Vb)` with
//!    `Qtc = Qts·√(1 + Vas/Vb)` (Thiele/Small, closed box). An open-back cabinet has no box spring (its driver
//!    works at its free-air `fs`, `Qts`), but the rear wave wraps round and cancels the front one at low
//!    frequencies (dipole): a further 6 dB/octave below `c/(2π·D)`, `D` the front-to-back path.
//! 2. **Mid band: the voice coil.** In the mass-controlled band the pressure follows the coil current, which the
//!    coil's (lossy, "semi-") inductance lowers above `Re/(2π·Le)`: a gentle downward shelf.
//! 3. **Cone break-up.** A paper cone stops moving as a piston in the low kHz: its bending modes give a row of
//!    resonance peaks with anti-resonance dips between them, then the response falls steeply (mass plus the
//!    cone's own losses): peaking filters plus a fourth-order low-pass.
//! 4. **The cabinet.** Standing waves between the front and back panels (`c/(2·depth)`) and a panel resonance leak
//!    through the cone as small, narrow peaks (closed backs); the back-wall reflection of an open back makes a
//!    comb.
//! 5. **The microphone.** A dynamic cardioid a few centimetres from the grille: proximity bass lift, the capsule's
//!    presence peak, its own top-end roll-off, and the high-frequency loss of placing it off the cone's axis
//!    (a piston's directivity, `2·J1(ka·sinθ)/(ka·sinθ)`, falls to −3 dB near `ka·sinθ ≈ 1.6`).
//! 6. **The room.** The floor reflection reaches the mic late and far weaker (distance ratio, air/floor
//!    absorption as a low-pass).
//!
//! Everything runs in f32 through [`Biquad`] sections over a unit impulse; the tail is faded out, and the result is
//! scaled to a −1 dBFS peak (the IR loader normalises loudness anyway).

use crate::dsp::biquad::{Biquad, Coefficients};

/// Speed of sound, m/s (20 °C).
const SPEED_OF_SOUND: f32 = 343.0;

/// How the speaker sits in its cabinet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Enclosure {
    /// Sealed box: `compliance_ratio` is Vas/Vb, the air spring's stiffness relative to the suspension's.
    Closed { compliance_ratio: f32, depth_m: f32, panel_hz: f32 },
    /// Open back: the rear wave travels `path_m` round the baffle; the wall behind is `wall_m` away.
    Open { path_m: f32, wall_m: f32 },
}

/// A cabinet and the microphone on it.
#[derive(Debug, Clone, PartialEq)]
pub struct CabinetSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// Driver free-air resonance (Hz) and total Q.
    pub fs_hz: f32,
    pub qts: f32,
    /// Cone radius, m (a 12" speaker's effective radius is about 0.13 m).
    pub cone_radius_m: f32,
    /// Where the voice coil's inductance starts to lower the current, Hz, and by how much it has by the top, dB.
    pub coil_corner_hz: f32,
    pub coil_loss_db: f32,
    /// Cone break-up modes: (frequency Hz, Q, gain dB); negative gains are anti-resonances.
    pub breakup: &'static [(f32, f32, f32)],
    /// Where the cone's output falls away (fourth-order low-pass corner), Hz.
    pub rolloff_hz: f32,
    pub enclosure: Enclosure,
    /// Microphone: distance from the grille (m), angle off the cone's axis (degrees), height of the cone's centre
    /// above the floor (m).
    pub mic_distance_m: f32,
    pub mic_off_axis_deg: f32,
    pub floor_height_m: f32,
    /// Length of the rendered response, seconds.
    pub seconds: f32,
}

/// The cabinets the project ships (their IRs live in `assets/ir/`, made by `neuralboard cab-ir NAME OUT.wav`).
pub const CABINETS: &[CabinetSpec] = &[
    CabinetSpec {
        name: "4x12-closed",
        description: "Closed-back 4x12 with British-style 12\" speakers, dynamic mic close on the cone, 10° off axis",
        fs_hz: 75.0,
        qts: 0.5,
        cone_radius_m: 0.13,
        coil_corner_hz: 1500.0,
        coil_loss_db: -5.0,
        breakup: &[(1250.0, 2.0, 3.0), (2500.0, 3.0, 5.0), (3500.0, 4.0, -6.0), (4400.0, 5.0, 3.5)],
        rolloff_hz: 5200.0,
        enclosure: Enclosure::Closed { compliance_ratio: 1.2, depth_m: 0.36, panel_hz: 180.0 },
        mic_distance_m: 0.03,
        mic_off_axis_deg: 10.0,
        floor_height_m: 0.5,
        seconds: 0.1,
    },
    CabinetSpec {
        name: "1x12-open",
        description: "Open-back 1x12 combo with an American-style 12\" speaker, dynamic mic close, 20° off axis",
        fs_hz: 95.0,
        qts: 0.75,
        cone_radius_m: 0.13,
        coil_corner_hz: 2000.0,
        coil_loss_db: -4.0,
        breakup: &[(1600.0, 2.0, 2.5), (3000.0, 3.0, 4.0), (4200.0, 4.0, -5.0), (5200.0, 5.0, 3.0)],
        rolloff_hz: 6000.0,
        enclosure: Enclosure::Open { path_m: 0.45, wall_m: 0.3 },
        mic_distance_m: 0.04,
        mic_off_axis_deg: 20.0,
        floor_height_m: 0.45,
        seconds: 0.1,
    },
];

/// The shipped cabinet called `name`.
pub fn find(name: &str) -> Option<&'static CabinetSpec> {
    CABINETS.iter().find(|c| c.name == name)
}

/// The minimum-phase part of the model: every section in signal order.
fn sections(spec: &CabinetSpec, sample_rate: f32) -> Vec<Coefficients> {
    let sr = sample_rate;
    let mut s = Vec::new();
    // 1. Driver and box.
    match spec.enclosure {
        Enclosure::Closed { compliance_ratio, depth_m, panel_hz } => {
            let k = (1.0 + compliance_ratio).sqrt();
            s.push(Coefficients::highpass(sr, spec.fs_hz * k, spec.qts * k));
            // 4. Standing wave between front and back panels, and the panel's own resonance.
            s.push(Coefficients::peaking(sr, SPEED_OF_SOUND / (2.0 * depth_m), 8.0, 1.5));
            s.push(Coefficients::peaking(sr, panel_hz, 3.0, 1.0));
        }
        Enclosure::Open { path_m, .. } => {
            s.push(Coefficients::highpass(sr, spec.fs_hz, spec.qts));
            s.push(Coefficients::highpass_first_order(sr, SPEED_OF_SOUND / (std::f32::consts::TAU * path_m)));
        }
    }
    // 2. Voice-coil inductance.
    s.push(Coefficients::high_shelf(sr, spec.coil_corner_hz, spec.coil_loss_db));
    // 3. Break-up modes and roll-off (fourth-order Butterworth: Q 0.541 and 1.307).
    for &(f, q, g) in spec.breakup {
        s.push(Coefficients::peaking(sr, f, q, g));
    }
    s.push(Coefficients::lowpass(sr, spec.rolloff_hz, 0.541));
    s.push(Coefficients::lowpass(sr, spec.rolloff_hz, 1.307));
    // 5. Microphone: proximity lift (stronger the closer), presence peak, capsule top end and low cut.
    let proximity_db = (6.0 * (0.05 / spec.mic_distance_m.max(0.01)).log2().clamp(0.0, 1.5)).max(1.0);
    s.push(Coefficients::low_shelf(sr, 200.0, proximity_db));
    s.push(Coefficients::peaking(sr, 5500.0, 1.2, 4.0));
    s.push(Coefficients::lowpass(sr, 14_000.0, std::f32::consts::FRAC_1_SQRT_2));
    s.push(Coefficients::highpass(sr, 50.0, std::f32::consts::FRAC_1_SQRT_2));
    // Off-axis loss: the piston directivity's −3 dB point, as a gentle second-order low-pass.
    let sin = spec.mic_off_axis_deg.to_radians().sin();
    if sin > 1e-3 {
        let corner = 1.6 * SPEED_OF_SOUND / (std::f32::consts::TAU * spec.cone_radius_m * sin);
        s.push(Coefficients::lowpass(sr, corner.min(0.45 * sr), 0.6));
    }
    s
}

/// The delayed reflections: (delay in seconds, gain, low-pass corner in Hz for the surface's absorption).
fn reflections(spec: &CabinetSpec) -> Vec<(f32, f32, f32)> {
    let direct = spec.mic_distance_m.max(0.005);
    let mut r = Vec::new();
    // Floor: mirror source 2·h below the cone's centre.
    let floor_path = (direct * direct + 4.0 * spec.floor_height_m * spec.floor_height_m).sqrt();
    r.push(((floor_path - direct) / SPEED_OF_SOUND, 0.7 * direct / floor_path, 3000.0));
    if let Enclosure::Open { wall_m, path_m } = spec.enclosure {
        // The rear wave (opposite polarity) reflected by the wall behind the combo.
        let path = path_m + 2.0 * wall_m;
        r.push((path / SPEED_OF_SOUND, -0.25, 2500.0));
    }
    r
}

/// Renders the cabinet's impulse response at `sample_rate`: faded tail, −1 dBFS peak.
pub fn render(spec: &CabinetSpec, sample_rate: f32) -> Vec<f32> {
    let len = ((spec.seconds * sample_rate).round() as usize).max(64);
    let mut ir = vec![0.0f32; len];
    ir[0] = 1.0;
    for (delay, gain, absorption_hz) in reflections(spec) {
        let n = (delay * sample_rate).round() as usize;
        if n < len {
            // The reflection goes through the surface's absorption on its own, then joins the direct sound.
            let mut lp = Biquad::new(Coefficients::lowpass_first_order(sample_rate, absorption_hz));
            let mut reflected = vec![0.0f32; len - n];
            reflected[0] = gain;
            lp.process(&mut reflected);
            for (y, r) in ir[n..].iter_mut().zip(&reflected) {
                *y += r;
            }
        }
    }
    for c in sections(spec, sample_rate) {
        Biquad::new(c).process(&mut ir);
    }
    // Fade the last quarter out (half cosine), so truncation adds no click.
    let fade = len / 4;
    for (i, y) in ir[len - fade..].iter_mut().enumerate() {
        *y *= 0.5 * (1.0 + (std::f32::consts::PI * (i + 1) as f32 / fade as f32).cos());
    }
    let peak = ir.iter().fold(0.0f32, |m, y| m.max(y.abs()));
    let scale = 10f32.powf(-1.0 / 20.0) / peak.max(1e-9);
    ir.iter_mut().for_each(|y| *y *= scale);
    ir
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teacher::testing::response_magnitude;

    fn db_at(ir: &[f32], f: f32) -> f64 {
        20.0 * response_magnitude(ir, 48_000.0, f).log10()
    }

    /// Mean level over a band, dB.
    fn band_db(ir: &[f32], lo: f32, hi: f32) -> f64 {
        let n = 24;
        (0..n).map(|i| db_at(ir, lo * (hi / lo).powf(i as f32 / (n - 1) as f32))).sum::<f64>() / n as f64
    }

    #[test]
    fn every_cabinet_has_a_guitar_speaker_response() {
        for spec in CABINETS {
            let ir = render(spec, 48_000.0);
            assert_eq!(ir.len(), 4800, "{}", spec.name);
            assert!(ir.iter().all(|y| y.is_finite()));
            let peak = ir.iter().fold(0.0f32, |m, y| m.max(y.abs()));
            assert!((20.0 * peak.log10() + 1.0).abs() < 0.01, "{}: peak at -1 dBFS", spec.name);
            let mids = band_db(&ir, 400.0, 2500.0);
            // Sub-bass and the top octave are far below the mids; a low E's fundamental is still there.
            assert!(db_at(&ir, 30.0) < mids - 18.0, "{}: {} vs {mids}", spec.name, db_at(&ir, 30.0));
            assert!(band_db(&ir, 9000.0, 16_000.0) < mids - 20.0, "{}: top end", spec.name);
            assert!(db_at(&ir, 82.0) > mids - 15.0, "{}: low E fundamental", spec.name);
            // The tail has died away: the last 10 ms carry almost nothing.
            let tail: f32 = ir[ir.len() - 480..].iter().map(|y| y * y).sum();
            let total: f32 = ir.iter().map(|y| y * y).sum();
            assert!(tail < 1e-6 * total, "{}: tail {tail} of {total}", spec.name);
        }
    }

    #[test]
    fn the_closed_box_has_more_low_end_than_the_open_back() {
        let closed = render(find("4x12-closed").unwrap(), 48_000.0);
        let open = render(find("1x12-open").unwrap(), 48_000.0);
        let low = |ir: &[f32]| band_db(ir, 50.0, 110.0) - band_db(ir, 400.0, 2500.0);
        assert!(low(&closed) > low(&open) + 3.0, "{} vs {}", low(&closed), low(&open));
    }

    #[test]
    fn rendering_is_deterministic_and_rate_aware() {
        let spec = find("4x12-closed").unwrap();
        assert_eq!(render(spec, 48_000.0), render(spec, 48_000.0));
        assert_eq!(render(spec, 44_100.0).len(), 4410);
        assert!(find("nope").is_none());
    }
}
