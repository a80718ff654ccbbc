//! A rotary knob drawn on a canvas: drag up/down, mouse wheel, Shift for fine adjustment, double-click to reset.
//!
//! The knob works in normalised positions (0..=1, the parameter's own curve applied by the engine's
//! [`neuralboard_engine::ParamSpec`]), so one widget serves every parameter.

use std::time::{Duration, Instant};

use iced::mouse::{self, Cursor};
use iced::widget::canvas::{self, Frame, Geometry, Path, Stroke, path::Arc};
use iced::{Color, Event, Point, Radians, Rectangle, Renderer, Theme, keyboard};

use super::style;

/// Pixels of vertical drag for the whole range.
const DRAG_RANGE_PX: f32 = 200.0;
/// With Shift held the same drag moves this much less.
const FINE_FACTOR: f32 = 10.0;
/// Share of the range one wheel notch moves.
const WHEEL_STEP: f32 = 0.02;
/// Two presses closer than this are a double-click.
const DOUBLE_CLICK: Duration = Duration::from_millis(400);
/// Where the scale starts and ends, in radians clockwise from 3 o'clock: 7:30 round to 4:30.
const START_ANGLE: f32 = 0.75 * std::f32::consts::PI;
const SWEEP: f32 = 1.5 * std::f32::consts::PI;

/// Records a press at `now`; true when it completes a double-click (which is then forgotten, so a third press
/// starts afresh). Shared by the knob and the pad.
pub(super) fn double_click(last_press: &mut Option<Instant>, now: Instant) -> bool {
    if last_press.is_some_and(|t| now.duration_since(t) < DOUBLE_CLICK) {
        *last_press = None;
        true
    } else {
        *last_press = Some(now);
        false
    }
}

/// What the player did to a knob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KnobEvent {
    /// Move to this normalised position.
    Set(f32),
    /// Back to the parameter's default.
    Reset,
}

/// The knob as drawn: its position and how it reports changes.
pub struct Knob<F> {
    /// Normalised position, 0..=1.
    pub value: f32,
    /// Normalised default, marked on the scale.
    pub default: f32,
    /// Colour of the value arc (the pedal's accent).
    pub color: Color,
    pub on_event: F,
}

/// Drag and click state kept by the canvas between events.
#[derive(Debug, Default)]
pub struct KnobState {
    drag: Option<Drag>,
    last_press: Option<Instant>,
    fine: bool,
}

#[derive(Debug, Clone, Copy)]
struct Drag {
    start_y: f32,
    start_value: f32,
}

impl<F> Knob<F> {
    fn moved(&self, drag: Drag, y: f32, fine: bool) -> f32 {
        let scale = if fine { DRAG_RANGE_PX * FINE_FACTOR } else { DRAG_RANGE_PX };
        (drag.start_value + (drag.start_y - y) / scale).clamp(0.0, 1.0)
    }
}

impl<Message, F: Fn(KnobEvent) -> Message> canvas::Program<Message> for Knob<F> {
    type State = KnobState;

    fn update(
        &self,
        state: &mut KnobState,
        event: &Event,
        bounds: Rectangle,
        cursor: Cursor,
    ) -> Option<canvas::Action<Message>> {
        match event {
            Event::Keyboard(keyboard::Event::ModifiersChanged(modifiers)) => {
                state.fine = modifiers.shift();
                if let (Some(drag), Some(position)) = (state.drag, cursor.position()) {
                    // Re-anchor so switching precision mid-drag does not jump.
                    state.drag =
                        Some(Drag { start_y: position.y, start_value: self.moved(drag, position.y, !state.fine) });
                }
                None
            }
            Event::Mouse(mouse::Event::ButtonPressed(mouse::Button::Left)) => {
                cursor.position_in(bounds)?;
                if double_click(&mut state.last_press, Instant::now()) {
                    state.drag = None;
                    return Some(canvas::Action::publish((self.on_event)(KnobEvent::Reset)).and_capture());
                }
                let y = cursor.position()?.y;
                state.drag = Some(Drag { start_y: y, start_value: self.value });
                Some(canvas::Action::capture())
            }
            Event::Mouse(mouse::Event::CursorMoved { position }) => {
                let drag = state.drag?;
                let value = self.moved(drag, position.y, state.fine);
                Some(canvas::Action::publish((self.on_event)(KnobEvent::Set(value))).and_capture())
            }
            Event::Mouse(mouse::Event::ButtonReleased(mouse::Button::Left)) => {
                state.drag.take().map(|_| canvas::Action::capture())
            }
            Event::Mouse(mouse::Event::WheelScrolled { delta }) => {
                cursor.position_in(bounds)?;
                let notches = match delta {
                    mouse::ScrollDelta::Lines { y, .. } => *y,
                    mouse::ScrollDelta::Pixels { y, .. } => *y / 40.0,
                };
                let step = if state.fine { WHEEL_STEP / FINE_FACTOR } else { WHEEL_STEP };
                let value = (self.value + notches * step).clamp(0.0, 1.0);
                Some(canvas::Action::publish((self.on_event)(KnobEvent::Set(value))).and_capture())
            }
            _ => None,
        }
    }

    fn draw(
        &self,
        state: &KnobState,
        renderer: &Renderer,
        _: &Theme,
        bounds: Rectangle,
        cursor: Cursor,
    ) -> Vec<Geometry> {
        let mut frame = Frame::new(renderer, bounds.size());
        let center = frame.center();
        let radius = 0.5 * bounds.width.min(bounds.height) - 3.0;
        let hot = state.drag.is_some() || cursor.is_over(bounds);

        let arc = |from: f32, to: f32, r: f32| {
            Path::new(|b| {
                b.arc(Arc { center, radius: r, start_angle: Radians(from), end_angle: Radians(to) });
            })
        };
        let track = Stroke::default().with_width(3.0).with_color(style::shade(style::BACKGROUND, 0.15));
        frame.stroke(&arc(START_ANGLE, START_ANGLE + SWEEP, radius), track);
        let angle = START_ANGLE + SWEEP * self.value.clamp(0.0, 1.0);
        if self.value > 0.001 {
            let lit = Stroke::default().with_width(3.0).with_color(style::shade(self.color, 0.45));
            frame.stroke(&arc(START_ANGLE, angle, radius), lit);
        }
        // The default, a small tick outside the scale.
        let d = START_ANGLE + SWEEP * self.default.clamp(0.0, 1.0);
        let tick = Path::line(
            Point::new(center.x + (radius + 1.0) * d.cos(), center.y + (radius + 1.0) * d.sin()),
            Point::new(center.x + (radius + 3.0) * d.cos(), center.y + (radius + 3.0) * d.sin()),
        );
        frame.stroke(&tick, Stroke::default().with_width(1.5).with_color(style::DIM));

        let body = radius - 5.0;
        frame.fill(
            &Path::circle(center, body),
            if hot { Color::from_rgb8(0x26, 0x29, 0x2e) } else { Color::from_rgb8(0x1a, 0x1c, 0x20) },
        );
        frame.stroke(
            &Path::circle(center, body),
            Stroke::default().with_width(1.0).with_color(Color::from_rgb8(0x40, 0x44, 0x4a)),
        );
        let pointer = Path::line(
            Point::new(center.x + 0.25 * body * angle.cos(), center.y + 0.25 * body * angle.sin()),
            Point::new(center.x + 0.9 * body * angle.cos(), center.y + 0.9 * body * angle.sin()),
        );
        frame.stroke(
            &pointer,
            Stroke::default().with_width(3.0).with_color(Color::WHITE).with_line_cap(canvas::LineCap::Round),
        );
        vec![frame.into_geometry()]
    }

    fn mouse_interaction(&self, state: &KnobState, bounds: Rectangle, cursor: Cursor) -> mouse::Interaction {
        if state.drag.is_some() {
            mouse::Interaction::ResizingVertically
        } else if cursor.is_over(bounds) {
            mouse::Interaction::Grab
        } else {
            mouse::Interaction::default()
        }
    }
}
