//! An XY pad drawn on a canvas: two parameters moved together by dragging a puck, over a map of what lies where.
//! The reverb's pad is its room space: the colour is the decay time of the room decoded there (dark short, light
//! long), the dots are the rooms the model learnt from. Click or drag anywhere to move; double-click to reset.
//!
//! Like the knob it works in normalised positions (0..=1 on both axes, y up), so the engine's parameter specs
//! decide the units.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use iced::mouse::{self, Cursor};
use iced::widget::canvas::{self, Frame, Geometry, Path, Stroke};
use iced::{Color, Event, Point, Rectangle, Renderer, Size, Theme};
use neuralboard_engine::pedal::PadMap;

use super::knob::double_click;
use super::style;

/// The map is drawn as this many cells a side, interpolated from the model's coarser grid.
const RASTER: usize = 32;
/// Decay times the colour scale spans (seconds, logarithmic): the shipped rooms run from 0.15 s to about 3 s.
const SHORTEST_S: f32 = 0.15;
const LONGEST_S: f32 = 4.0;
/// The colours of the shortest and the longest decay.
const DRY: Color = Color { r: 0.07, g: 0.11, b: 0.20, a: 1.0 };
const WET: Color = Color { r: 0.55, g: 0.80, b: 1.00, a: 1.0 };

/// What the player did to the pad.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PadEvent {
    /// Move the puck here (normalised x and y, y up).
    Set(f32, f32),
    /// Back to both parameters' defaults.
    Reset,
}

/// The pad as drawn: the puck's position, the map under it and how it reports moves.
pub struct Pad<F> {
    pub x: f32,
    pub y: f32,
    pub map: Option<Arc<PadMap>>,
    pub on_event: F,
}

/// Drag and click state kept by the canvas between events, and the drawn map.
#[derive(Default)]
pub struct PadState {
    dragging: bool,
    last_press: Option<Instant>,
    map: canvas::Cache,
    /// Which map the cache holds (its address), so another model redraws it.
    drawn: Cell<usize>,
}

/// Normalised pad position of a point (clamped to the pad).
fn position(bounds: Rectangle, point: Point) -> (f32, f32) {
    let x = (point.x - bounds.x) / bounds.width.max(1.0);
    let y = 1.0 - (point.y - bounds.y) / bounds.height.max(1.0);
    (x.clamp(0.0, 1.0), y.clamp(0.0, 1.0))
}

/// The colour of a decay time on the map's scale (grey where it is unknown).
pub fn decay_color(decay_s: Option<f32>) -> Color {
    let Some(decay) = decay_s else { return Color::from_rgb(0.2, 0.2, 0.22) };
    let t = ((decay.max(1e-3) / SHORTEST_S).ln() / (LONGEST_S / SHORTEST_S).ln()).clamp(0.0, 1.0);
    let mix = |a: f32, b: f32| a + (b - a) * t;
    Color::from_rgb(mix(DRY.r, WET.r), mix(DRY.g, WET.g), mix(DRY.b, WET.b))
}

impl<Message, F: Fn(PadEvent) -> Message> canvas::Program<Message> for Pad<F> {
    type State = PadState;

    fn update(
        &self,
        state: &mut PadState,
        event: &Event,
        bounds: Rectangle,
        cursor: Cursor,
    ) -> Option<canvas::Action<Message>> {
        match event {
            Event::Mouse(mouse::Event::ButtonPressed(mouse::Button::Left)) => {
                let point = cursor.position_over(bounds)?;
                if double_click(&mut state.last_press, Instant::now()) {
                    state.dragging = false;
                    return Some(canvas::Action::publish((self.on_event)(PadEvent::Reset)).and_capture());
                }
                state.dragging = true;
                let (x, y) = position(bounds, point);
                Some(canvas::Action::publish((self.on_event)(PadEvent::Set(x, y))).and_capture())
            }
            Event::Mouse(mouse::Event::CursorMoved { position: point }) if state.dragging => {
                let (x, y) = position(bounds, *point);
                Some(canvas::Action::publish((self.on_event)(PadEvent::Set(x, y))).and_capture())
            }
            Event::Mouse(mouse::Event::ButtonReleased(mouse::Button::Left)) if state.dragging => {
                state.dragging = false;
                Some(canvas::Action::capture())
            }
            _ => None,
        }
    }

    fn draw(
        &self,
        state: &PadState,
        renderer: &Renderer,
        _: &Theme,
        bounds: Rectangle,
        cursor: Cursor,
    ) -> Vec<Geometry> {
        let address = self.map.as_ref().map_or(0, |m| Arc::as_ptr(m) as usize);
        if state.drawn.replace(address) != address {
            state.map.clear();
        }
        let map = state.map.draw(renderer, bounds.size(), |frame| draw_map(frame, self.map.as_deref()));

        let mut frame = Frame::new(renderer, bounds.size());
        let size = bounds.size();
        let puck = Point::new(self.x.clamp(0.0, 1.0) * size.width, (1.0 - self.y.clamp(0.0, 1.0)) * size.height);
        let hair = Stroke::default().with_width(1.0).with_color(Color { a: 0.35, ..Color::WHITE });
        frame.stroke(&Path::line(Point::new(puck.x, 0.0), Point::new(puck.x, size.height)), hair);
        frame.stroke(&Path::line(Point::new(0.0, puck.y), Point::new(size.width, puck.y)), hair);
        let hot = state.dragging || cursor.is_over(bounds);
        frame.fill(&Path::circle(puck, 6.0), Color { a: if hot { 0.5 } else { 0.3 }, ..Color::WHITE });
        frame.stroke(&Path::circle(puck, 6.0), Stroke::default().with_width(2.0).with_color(Color::WHITE));
        frame.stroke(
            &Path::rectangle(Point::ORIGIN, size),
            Stroke::default().with_width(1.0).with_color(style::shade(style::BACKGROUND, 0.25)),
        );
        vec![map, frame.into_geometry()]
    }

    fn mouse_interaction(&self, state: &PadState, bounds: Rectangle, cursor: Cursor) -> mouse::Interaction {
        if state.dragging {
            mouse::Interaction::Grabbing
        } else if cursor.is_over(bounds) {
            mouse::Interaction::Crosshair
        } else {
            mouse::Interaction::default()
        }
    }
}

/// The map layer: decay time as colour, the training rooms as dots. Without a map, a plain field.
fn draw_map(frame: &mut Frame, map: Option<&PadMap>) {
    let size = frame.size();
    let Some(map) = map else {
        frame.fill_rectangle(Point::ORIGIN, size, style::shade(style::BACKGROUND, 0.08));
        return;
    };
    if map.columns >= 2 && map.rows >= 2 {
        let cell = Size::new(size.width / RASTER as f32, size.height / RASTER as f32);
        for j in 0..RASTER {
            for i in 0..RASTER {
                let x = (i as f32 + 0.5) / RASTER as f32;
                let y = (j as f32 + 0.5) / RASTER as f32;
                let top_left = Point::new(i as f32 * cell.width, size.height - (j + 1) as f32 * cell.height);
                // A hair larger than the cell, so no seams show between neighbours.
                frame.fill_rectangle(
                    top_left,
                    Size::new(cell.width + 0.5, cell.height + 0.5),
                    decay_color(map.at(x, y).0),
                );
            }
        }
    } else {
        frame.fill_rectangle(Point::ORIGIN, size, style::shade(style::BACKGROUND, 0.08));
    }
    let dot = Color { a: 0.45, ..Color::WHITE };
    for room in &map.rooms {
        let at = Point::new(room.x * size.width, (1.0 - room.y) * size.height);
        frame.fill(&Path::circle(at, 1.2), dot);
    }
}

/// The readout under the pad: the decay time and size of the room at a position, as the map has them.
pub fn describe(map: &PadMap, x: f32, y: f32) -> String {
    let (decay, volume) = map.at(x, y);
    let volume = if volume >= 1000.0 {
        format!("{},{:03} m³", (volume / 1000.0).floor() as u32, volume.round() as u32 % 1000)
    } else {
        format!("{} m³", volume.round() as u32)
    };
    match decay {
        Some(decay) => format!("{decay:.1} s · {volume}"),
        None => volume,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neuralboard_engine::pedal::PadRoom;

    fn map() -> PadMap {
        PadMap {
            columns: 2,
            rows: 2,
            decay_s: vec![Some(0.2), Some(0.8), Some(0.8), Some(3.2)],
            volume_m3: vec![50.0, 200.0, 200.0, 2400.0],
            rooms: vec![PadRoom { x: 0.5, y: 0.5, decay_s: Some(0.8), volume_m3: 200.0 }],
        }
    }

    #[test]
    fn the_readout_names_the_decay_and_size_under_the_puck() {
        assert_eq!(describe(&map(), 0.0, 0.0), "0.2 s · 50 m³");
        assert_eq!(describe(&map(), 1.0, 1.0), "3.2 s · 2,400 m³");
        // In the middle, the geometric mean of the four corners: (0.2·0.8·0.8·3.2)^¼, (50·200·200·2400)^¼.
        assert_eq!(describe(&map(), 0.5, 0.5), "0.8 s · 263 m³");
    }

    #[test]
    fn longer_rooms_are_lighter_on_the_map() {
        let brightness = |c: Color| c.r + c.g + c.b;
        assert!(brightness(decay_color(Some(2.0))) > brightness(decay_color(Some(0.5))));
        assert_eq!(decay_color(Some(0.01)), decay_color(Some(SHORTEST_S)));
        assert_eq!(decay_color(Some(100.0)), decay_color(Some(LONGEST_S)));
    }

    #[test]
    fn positions_are_normalised_with_y_up_and_clamped() {
        let bounds = Rectangle::new(Point::new(10.0, 20.0), Size::new(100.0, 200.0));
        assert_eq!(position(bounds, Point::new(10.0, 220.0)), (0.0, 0.0));
        assert_eq!(position(bounds, Point::new(60.0, 70.0)), (0.5, 0.75));
        assert_eq!(position(bounds, Point::new(500.0, -5.0)), (1.0, 1.0));
    }
}
