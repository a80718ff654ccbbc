//! Level meters with peak hold and clip light, and the tuner's needle.

use iced::mouse::Cursor;
use iced::widget::canvas::{self, Frame, Geometry, Path, Stroke, Text};
use iced::{Color, Pixels, Point, Rectangle, Renderer, Size, Theme, alignment};

use super::style;

/// Lowest level the meter shows, dBFS.
const FLOOR_DB: f32 = -60.0;
/// Where the bar turns yellow and red, dBFS.
const YELLOW_DB: f32 = -12.0;
const RED_DB: f32 = -3.0;
/// How fast the displayed peak falls, dB per second (like a PPM's return).
const PEAK_FALL_DB_PER_S: f32 = 24.0;
/// How long the peak-hold mark and the clip light stay up, seconds.
const HOLD_S: f32 = 1.5;
const CLIP_HOLD_S: f32 = 3.0;

/// What one meter shows, updated from telemetry at the GUI's frame rate.
#[derive(Debug, Clone, Copy)]
pub struct MeterState {
    /// Displayed peak (falls smoothly), dBFS.
    pub peak_db: f32,
    pub rms_db: f32,
    /// Highest recent peak and how long it has been held.
    pub hold_db: f32,
    hold_age: f32,
    clip_age: f32,
}

impl Default for MeterState {
    fn default() -> Self {
        Self { peak_db: FLOOR_DB, rms_db: FLOOR_DB, hold_db: FLOOR_DB, hold_age: 0.0, clip_age: f32::INFINITY }
    }
}

fn to_db(x: f32) -> f32 {
    if x > 0.0 { (20.0 * x.log10()).max(FLOOR_DB) } else { FLOOR_DB }
}

impl MeterState {
    /// Takes one telemetry reading (linear peak and RMS since the last one) `dt` seconds after the previous one.
    pub fn update(&mut self, peak: f32, rms: f32, clipped: bool, dt: f32) {
        let peak_db = to_db(peak);
        self.peak_db = peak_db.max(self.peak_db - PEAK_FALL_DB_PER_S * dt);
        self.rms_db = to_db(rms);
        self.hold_age += dt;
        if peak_db >= self.hold_db || self.hold_age > HOLD_S {
            self.hold_db = peak_db.max(self.peak_db);
            self.hold_age = 0.0;
        }
        self.clip_age = if clipped { 0.0 } else { self.clip_age + dt };
    }

    pub fn clipping(&self) -> bool {
        self.clip_age < CLIP_HOLD_S
    }
}

/// A horizontal level meter.
pub struct Meter {
    pub state: MeterState,
}

fn position(db: f32, width: f32) -> f32 {
    ((db - FLOOR_DB) / -FLOOR_DB).clamp(0.0, 1.0) * width
}

impl<Message> canvas::Program<Message> for Meter {
    type State = ();

    fn draw(&self, _: &(), renderer: &Renderer, _: &Theme, bounds: Rectangle, _: Cursor) -> Vec<Geometry> {
        let mut frame = Frame::new(renderer, bounds.size());
        let clip_w = 10.0;
        let w = bounds.width - clip_w - 4.0;
        let h = bounds.height;
        frame.fill_rectangle(Point::ORIGIN, Size::new(w, h), style::shade(style::BACKGROUND, 0.08));
        let zones =
            [(FLOOR_DB, YELLOW_DB, style::GOOD), (YELLOW_DB, RED_DB, style::WARN), (RED_DB, 0.0, style::DANGER)];
        for (from, to, color) in zones {
            let x0 = position(from, w);
            // RMS: the body of the bar; peak: a lighter extension.
            let rms_end = position(self.state.rms_db.min(to), w);
            if rms_end > x0 {
                frame.fill_rectangle(Point::new(x0, 0.0), Size::new(rms_end - x0, h), color);
            }
            let peak_end = position(self.state.peak_db.min(to), w);
            let start = x0.max(rms_end);
            if peak_end > start {
                frame.fill_rectangle(
                    Point::new(start, 0.0),
                    Size::new(peak_end - start, h),
                    Color { a: 0.45, ..color },
                );
            }
        }
        if self.state.hold_db > FLOOR_DB {
            let x = position(self.state.hold_db, w);
            frame.fill_rectangle(Point::new((x - 2.0).max(0.0), 0.0), Size::new(2.0, h), Color::WHITE);
        }
        let clip = if self.state.clipping() { style::DANGER } else { style::shade(style::DANGER, -0.75) };
        frame.fill_rectangle(Point::new(w + 4.0, 0.0), Size::new(clip_w, h), clip);
        vec![frame.into_geometry()]
    }
}

/// Note names, sharps as guitarists read them.
const NOTE_NAMES: [&str; 12] = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

/// A note name with its octave for a MIDI note number ("E2").
pub fn note_name(note: u8) -> String {
    format!("{}{}", NOTE_NAMES[usize::from(note % 12)], i32::from(note / 12) - 1)
}

/// The tuner: note, needle over ±50 cents, cents readout; in tune within 3 cents lights green.
pub struct Tuner {
    pub reading: Option<(u8, f32)>,
    pub muted: bool,
}

/// Cents within which the tuner shows "in tune".
const IN_TUNE_CENTS: f32 = 3.0;

impl<Message> canvas::Program<Message> for Tuner {
    type State = ();

    fn draw(&self, _: &(), renderer: &Renderer, _: &Theme, bounds: Rectangle, _: Cursor) -> Vec<Geometry> {
        let mut frame = Frame::new(renderer, bounds.size());
        let (w, h) = (bounds.width, bounds.height);
        frame.fill(
            &Path::rounded_rectangle(Point::ORIGIN, bounds.size(), 6.0.into()),
            style::shade(style::BACKGROUND, 0.04),
        );
        let scale_x0 = 48.0;
        let scale_w = w - scale_x0 - 12.0;
        let mid = scale_x0 + 0.5 * scale_w;
        for i in -10..=10 {
            let x = mid + scale_w * 0.5 * i as f32 / 10.0;
            let tall = if i % 5 == 0 { 0.5 } else { 0.3 };
            let y0 = 0.5 * h - tall * 0.5 * h;
            frame.stroke(
                &Path::line(Point::new(x, y0), Point::new(x, y0 + tall * h)),
                Stroke::default().with_width(1.0).with_color(style::DIM),
            );
        }
        let (note, color) = match self.reading {
            Some((note, cents)) => {
                let in_tune = cents.abs() <= IN_TUNE_CENTS;
                let color = if in_tune { style::GOOD } else { style::ACCENT };
                let x = mid + scale_w * 0.5 * (cents / 50.0).clamp(-1.0, 1.0);
                frame.fill_rectangle(Point::new(x - 1.5, 4.0), Size::new(3.0, h - 8.0), color);
                frame.fill_text(Text {
                    content: format!("{cents:+.0} ¢"),
                    position: Point::new(w - 6.0, h - 3.0),
                    color: style::DIM,
                    size: Pixels(11.0),
                    align_x: alignment::Horizontal::Right.into(),
                    align_y: alignment::Vertical::Bottom,
                    ..Text::default()
                });
                (note_name(note), color)
            }
            None => ("–".to_owned(), style::DIM),
        };
        frame.fill_text(Text {
            content: note,
            position: Point::new(24.0, 0.5 * h),
            color,
            size: Pixels(24.0),
            align_x: alignment::Horizontal::Center.into(),
            align_y: alignment::Vertical::Center,
            ..Text::default()
        });
        if self.muted {
            frame.fill_text(Text {
                content: "MUTE".to_owned(),
                position: Point::new(scale_x0, 2.0),
                color: style::DANGER,
                size: Pixels(10.0),
                ..Text::default()
            });
        }
        vec![frame.into_geometry()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_names_follow_midi_numbering() {
        assert_eq!(note_name(69), "A4");
        assert_eq!(note_name(40), "E2");
        assert_eq!(note_name(61), "C#4");
    }

    #[test]
    fn meter_peak_falls_slowly_and_clip_light_holds() {
        let mut m = MeterState::default();
        m.update(1.0, 0.5, true, 0.03);
        assert!(m.peak_db > -0.1 && m.clipping());
        for _ in 0..10 {
            m.update(0.0, 0.0, false, 0.1);
        }
        // One second later the peak has fallen by the meter's return rate, not to the floor.
        assert!((m.peak_db + PEAK_FALL_DB_PER_S).abs() < 0.5, "{}", m.peak_db);
        assert!(m.clipping(), "the clip light holds for {CLIP_HOLD_S} s");
        for _ in 0..30 {
            m.update(0.0, 0.0, false, 0.1);
        }
        assert!(!m.clipping());
        assert_eq!(m.peak_db, FLOOR_DB);
    }
}
