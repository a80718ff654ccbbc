//! The settings page: audio host, devices, input channel, sample rate and buffer with the latency they give, and
//! the MIDI mappings.

use iced::widget::{Column, Space, button, container, pick_list, row, scrollable, text};
use iced::{Alignment, Element, Font, Length, Task, font};
use neuralboard_engine::midi::{Curve, Mapping, SwitchMode, Target};
use neuralboard_engine::settings::{AudioSettings, Settings};

use super::session::Session;
use super::style;
use crate::live::{self, HostDevices};
use crate::midi_io::{BoardView, describe_target};

const BOLD: Font = Font { weight: font::Weight::Bold, ..Font::DEFAULT };
/// What the pickers offer besides "the device's default".
const RATES: [u32; 5] = [44_100, 48_000, 88_200, 96_000, 192_000];
const BUFFERS: [u32; 7] = [32, 64, 128, 256, 512, 1024, 2048];
/// The label for "let the device decide".
const DEFAULT: &str = "Default";
const NO_INPUT: &str = "Off (demo loop)";

#[derive(Debug, Clone)]
pub enum Message {
    Catalog(Vec<HostDevices>),
    Host(String),
    Output(String),
    Input(String),
    Channel(String),
    Rate(String),
    Buffer(String),
    Apply,
    Rescan,
    DeleteMapping(usize),
    /// A mapping's switch mode or continuous shape, edited in place.
    MappingShape(usize, &'static str),
    Close,
}

/// What the page asks the app to do.
#[derive(Debug, Clone)]
pub enum Event {
    Apply(AudioSettings),
    DeleteMapping(usize),
    /// Replace the global mapping at this index.
    EditMapping(usize, Mapping),
    Rescan,
    Close,
}

/// The page's own state: a draft of the audio settings and the devices found.
#[derive(Debug, Clone)]
pub struct SettingsPage {
    pub draft: AudioSettings,
    pub catalog: Option<Vec<HostDevices>>,
}

/// Lists hosts and devices off the GUI thread (ALSA probes every card, which takes a moment).
pub fn load_catalog() -> Task<super::app::Message> {
    Task::perform(async { live::device_catalog() }, |catalog| super::app::Message::Settings(Message::Catalog(catalog)))
}

fn or_default(v: Option<String>) -> String {
    v.unwrap_or_else(|| DEFAULT.to_owned())
}

fn some_unless_default(v: String) -> Option<String> {
    (v != DEFAULT).then_some(v)
}

impl SettingsPage {
    pub fn new(settings: &Settings) -> Self {
        Self { draft: settings.audio.clone(), catalog: None }
    }

    /// Handles a message; `mappings` are the global ones, for edits.
    pub fn update(&mut self, message: Message, mappings: &[Mapping]) -> Option<Event> {
        if let Message::MappingShape(i, shape) = message {
            let mut mapping = mappings.get(i)?.clone();
            apply_shape(&mut mapping.target, shape);
            return Some(Event::EditMapping(i, mapping));
        }
        self.apply(message)
    }

    fn apply(&mut self, message: Message) -> Option<Event> {
        match message {
            Message::Catalog(catalog) => self.catalog = Some(catalog),
            Message::Host(host) => {
                self.draft.host = some_unless_default(host);
                // Device names belong to a host.
                self.draft.output_device = None;
                self.draft.input_device = None;
            }
            Message::Output(d) => self.draft.output_device = some_unless_default(d),
            Message::Input(d) => self.draft.input_device = some_unless_default(d),
            Message::Channel(c) => self.draft.input_channel = c.strip_prefix("Input ").and_then(|n| n.parse().ok()),
            Message::Rate(r) => self.draft.sample_rate = r.strip_suffix(" Hz").and_then(|n| n.parse().ok()),
            Message::Buffer(b) => self.draft.buffer = b.split(' ').next().and_then(|n| n.parse().ok()),
            Message::Apply => return Some(Event::Apply(self.draft.clone())),
            Message::Rescan => {
                self.catalog = None;
                return Some(Event::Rescan);
            }
            Message::DeleteMapping(i) => return Some(Event::DeleteMapping(i)),
            Message::MappingShape(..) => {}
            Message::Close => return Some(Event::Close),
        }
        None
    }

    fn host_entry(&self) -> Option<&HostDevices> {
        let catalog = self.catalog.as_ref()?;
        match &self.draft.host {
            Some(host) => catalog.iter().find(|h| h.host.eq_ignore_ascii_case(host)),
            None => catalog.first(),
        }
    }

    pub fn view<'a>(
        &'a self,
        session: &'a Session,
        settings: &'a Settings,
        monitor: &'a std::collections::VecDeque<String>,
        midi_problem: Option<&'a str>,
    ) -> Element<'a, Message> {
        let host = self.host_entry();
        let hosts: Vec<String> =
            std::iter::once(DEFAULT.to_owned()).chain(self.catalog.iter().flatten().map(|h| h.host.clone())).collect();
        let outputs: Vec<String> =
            std::iter::once(DEFAULT.to_owned()).chain(host.iter().flat_map(|h| h.outputs.iter().cloned())).collect();
        let inputs: Vec<String> = std::iter::once(DEFAULT.to_owned())
            .chain(host.iter().flat_map(|h| h.inputs.iter().map(|(n, _)| n.clone())))
            .collect();
        let input_channels = host
            .and_then(|h| {
                let wanted = self.draft.input_device.as_deref();
                h.inputs.iter().find(|(n, _)| wanted.is_none_or(|w| n.contains(w))).map(|(_, c)| *c)
            })
            .unwrap_or(2);
        let channels: Vec<String> =
            std::iter::once(NO_INPUT.to_owned()).chain((1..=input_channels).map(|c| format!("Input {c}"))).collect();
        let rates: Vec<String> =
            std::iter::once(DEFAULT.to_owned()).chain(RATES.iter().map(|r| format!("{r} Hz"))).collect();
        let buffers: Vec<String> =
            std::iter::once(DEFAULT.to_owned()).chain(BUFFERS.iter().map(|b| format!("{b} frames"))).collect();

        let field = |label: &'static str, picker: Element<'a, Message>| {
            row![text(label).size(14).width(150).color(style::DIM), picker].spacing(12).align_y(Alignment::Center)
        };
        let picker = |options: Vec<String>, selected: String, on: fn(String) -> Message| -> Element<'a, Message> {
            pick_list(options, Some(selected), on).text_size(14).width(380).into()
        };
        let d = &self.draft;
        let mut audio = Column::new().spacing(10).push(text("Audio").size(18).font(BOLD));
        if self.catalog.is_none() {
            audio = audio.push(text("Looking for audio devices…").size(13).color(style::DIM));
        }
        if let Some(problem) = host.and_then(|h| h.problem.as_ref()) {
            audio = audio.push(text(format!("This host cannot be used now: {problem}")).size(13).color(style::WARN));
        }
        audio = audio
            .push(field("Host", picker(hosts, or_default(d.host.clone()), Message::Host)))
            .push(field("Output device", picker(outputs, or_default(d.output_device.clone()), Message::Output)))
            .push(field("Input device", picker(inputs, or_default(d.input_device.clone()), Message::Input)))
            .push(field(
                "Guitar input",
                picker(
                    channels,
                    d.input_channel.map_or(NO_INPUT.to_owned(), |c| format!("Input {c}")),
                    Message::Channel,
                ),
            ))
            .push(field(
                "Sample rate",
                picker(rates, d.sample_rate.map_or(DEFAULT.to_owned(), |r| format!("{r} Hz")), Message::Rate),
            ))
            .push(field(
                "Buffer",
                picker(buffers, d.buffer.map_or(DEFAULT.to_owned(), |b| format!("{b} frames")), Message::Buffer),
            ));
        let estimate = match (d.buffer, d.sample_rate.or(session.info().map(|i| i.sample_rate))) {
            (Some(buffer), Some(rate)) => {
                let frames = live::latency_frames(buffer, d.input_channel.is_some());
                format!(
                    "Estimated round trip with these settings: {:.1} ms",
                    1000.0 * f64::from(frames) / f64::from(rate)
                )
            }
            _ => "Pick a buffer size to see the latency it gives.".to_owned(),
        };
        audio = audio
            .push(text(estimate).size(13).color(style::DIM))
            .push(text(format!("Now: {}", session.describe())).size(13).color(style::DIM))
            .push(
                text("Guitar input stays off until you choose a channel: an open input next to speakers can howl.")
                    .size(12)
                    .color(style::DIM),
            )
            .push(
                row![
                    button(text("Apply").size(14)).padding([6, 16]).style(style::flat(false)).on_press(Message::Apply),
                    button(text("Find devices again").size(14))
                        .padding([6, 16])
                        .style(style::flat(false))
                        .on_press(Message::Rescan),
                    button(text("Back to the board").size(14))
                        .padding([6, 16])
                        .style(style::flat(false))
                        .on_press(Message::Close),
                ]
                .spacing(8),
            );

        let mut midi = Column::new().spacing(6).push(text("MIDI mappings").size(18).font(BOLD));
        if let Some(problem) = midi_problem {
            midi = midi.push(text(problem).size(13).color(style::WARN));
        }
        if settings.midi.mappings.is_empty() {
            midi = midi.push(
                text("No mappings yet. Press MIDI Learn on the board, touch a knob or footswitch, then move a control on your MIDI device.")
                    .size(13)
                    .color(style::DIM),
            );
        }
        let board = BoardView::of(&session.controller);
        for (i, mapping) in settings.midi.mappings.iter().enumerate() {
            midi = midi.push(
                row![
                    text(format!("{} → {}", mapping.source, describe_target(&mapping.target, &board)))
                        .size(13)
                        .width(Length::Fill),
                    pick_list(shapes_for(&mapping.target), Some(shape_of(&mapping.target)), move |shape| {
                        Message::MappingShape(i, shape)
                    })
                    .text_size(12)
                    .width(130),
                    button(text("Delete").size(12))
                        .padding([2, 8])
                        .style(style::flat(false))
                        .on_press(Message::DeleteMapping(i)),
                ]
                .spacing(8)
                .align_y(Alignment::Center),
            );
        }
        for mapping in &session.controller.midi_map().mappings {
            midi = midi.push(
                text(format!("{} → {} (this preset)", mapping.source, describe_target(&mapping.target, &board)))
                    .size(13),
            );
        }
        midi = midi.push(Space::new().height(12)).push(text("MIDI monitor").size(18).font(BOLD));
        if monitor.is_empty() {
            midi = midi.push(text("Nothing received yet.").size(13).color(style::DIM));
        }
        for line in monitor.iter().rev() {
            midi = midi.push(text(line.clone()).size(12).color(style::DIM));
        }

        container(
            row![
                container(scrollable(audio)).width(Length::FillPortion(3)),
                Space::new().width(24),
                container(scrollable(midi)).width(Length::FillPortion(2)),
            ]
            .padding(20),
        )
        .padding([12, 16])
        .width(Length::Fill)
        .height(Length::Fill)
        .into()
    }
}

/// How a footswitch mapping switches, and how a continuous mapping spreads the control's travel.
const SWITCH_SHAPES: &[&str] = &["toggle", "momentary", "latch"];
const CONTINUOUS_SHAPES: &[&str] = &["linear", "log", "linear, inverted", "log, inverted"];

fn shapes_for(target: &Target) -> &'static [&'static str] {
    match target {
        Target::Bypass { .. } | Target::Tuner { .. } => SWITCH_SHAPES,
        Target::Param { .. } | Target::InputGain { .. } | Target::OutputLevel { .. } => CONTINUOUS_SHAPES,
        Target::NextPreset | Target::PreviousPreset => &["press"],
    }
}

fn continuous(target: &Target) -> Option<(f32, f32, Curve)> {
    match *target {
        Target::Param { min, max, curve, .. }
        | Target::InputGain { min, max, curve }
        | Target::OutputLevel { min, max, curve } => Some((min, max, curve)),
        _ => None,
    }
}

/// The shape a mapping has now, as [`shapes_for`] names it.
fn shape_of(target: &Target) -> &'static str {
    match target {
        Target::Bypass { mode, .. } | Target::Tuner { mode } => match mode {
            SwitchMode::Toggle => "toggle",
            SwitchMode::Momentary => "momentary",
            SwitchMode::Latch => "latch",
        },
        _ => match continuous(target) {
            Some((min, max, curve)) => match (curve, min > max) {
                (Curve::Linear, false) => "linear",
                (Curve::Log, false) => "log",
                (Curve::Linear, true) => "linear, inverted",
                (Curve::Log, true) => "log, inverted",
            },
            None => "press",
        },
    }
}

/// Gives a mapping the shape picked: a switch mode, or a curve with the travel's direction (the range kept).
fn apply_shape(target: &mut Target, shape: &str) {
    match target {
        Target::Bypass { mode, .. } | Target::Tuner { mode } => {
            *mode = match shape {
                "momentary" => SwitchMode::Momentary,
                "latch" => SwitchMode::Latch,
                _ => SwitchMode::Toggle,
            };
        }
        Target::Param { min, max, curve, .. }
        | Target::InputGain { min, max, curve }
        | Target::OutputLevel { min, max, curve } => {
            *curve = if shape.starts_with("log") { Curve::Log } else { Curve::Linear };
            let inverted = shape.ends_with("inverted");
            if inverted != (*min > *max) {
                std::mem::swap(min, max);
            }
        }
        Target::NextPreset | Target::PreviousPreset => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_a_mapping_shape_changes_mode_curve_and_direction_but_keeps_the_range() {
        let mut t = Target::Param { slot: 0, param: "gain_db".into(), min: 0.2, max: 0.9, curve: Curve::Linear };
        apply_shape(&mut t, "log, inverted");
        assert_eq!(t, Target::Param { slot: 0, param: "gain_db".into(), min: 0.9, max: 0.2, curve: Curve::Log });
        assert_eq!(shape_of(&t), "log, inverted");
        apply_shape(&mut t, "linear");
        assert_eq!(shape_of(&t), "linear");
        let mut b = Target::Bypass { slot: 1, mode: SwitchMode::Toggle };
        apply_shape(&mut b, "momentary");
        assert_eq!(b, Target::Bypass { slot: 1, mode: SwitchMode::Momentary });
        assert!(shapes_for(&b).contains(&shape_of(&b)));
    }
}
