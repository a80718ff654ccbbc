//! The top bar: preset selector and its actions, tuner, meters, CPU and xruns, record, settings.

use iced::widget::{Space, button, canvas, column, container, pick_list, row, text, text_input};
use iced::{Alignment, Element, Length};

use super::app::{App, Message, Screen, flat_button};
use super::meter::{Meter, Tuner};
use super::style;

/// The preset name field's id, so Save As can focus it.
pub const NAME_INPUT: &str = "preset-name";

pub fn view(app: &App) -> Element<'_, Message> {
    let title = text("Neuralboard").size(22).color(style::TEXT);
    let controller = &app.session.controller;

    let preset: Element<'_, Message> = match &app.naming {
        Some(naming) => row![
            text_input(if naming.rename { "New name" } else { "Name of the new preset" }, &naming.text)
                .id(NAME_INPUT)
                .on_input(Message::NameInput)
                .on_submit(Message::NameCommit)
                .size(15)
                .width(260),
            flat_button(if naming.rename { "Rename" } else { "Save" }, Message::NameCommit),
            flat_button("Cancel", Message::NameCancel),
        ]
        .spacing(6)
        .align_y(Alignment::Center)
        .into(),
        None => {
            let entries = &app.library.entries;
            let current = app.current_preset_index().and_then(|i| entries.get(i).cloned());
            let placeholder = format!("{}{}", controller.name(), if controller.is_modified() { " •" } else { "" });
            let picker = pick_list(entries.as_slice(), current, move |picked| {
                Message::PresetPicked(entries.iter().position(|e| *e == picked).unwrap_or(0))
            })
            .placeholder(placeholder)
            .text_size(15)
            .width(250);
            let modified = if controller.is_modified() { "•" } else { " " };
            row![
                picker,
                text(modified).size(22).color(style::ACCENT),
                flat_button("◀", Message::StepPreset(-1)),
                flat_button("▶", Message::StepPreset(1)),
                flat_button("Save", Message::Save),
                flat_button("Save As", Message::StartNaming { rename: false }),
            ]
            .spacing(6)
            .align_y(Alignment::Center)
            .into()
        }
    };

    let tuner = button(canvas(Tuner { reading: app.tuner, muted: app.tuner_muted }).width(170).height(40))
        .padding(0)
        .style(iced::widget::button::text)
        .on_press(Message::TunerMute);
    let meter = |label: &'static str, state| {
        row![text(label).size(11).color(style::DIM).width(28), canvas(Meter { state }).width(130).height(10)]
            .spacing(4)
            .align_y(Alignment::Center)
    };
    let meters = column![meter("IN", app.input_meter), meter("OUT", app.output_meter)].spacing(8);
    let load = column![
        text(format!("CPU {:.1} %", 100.0 * app.cpu)).size(12).color(if app.cpu > 0.7 {
            style::DANGER
        } else {
            style::DIM
        }),
        text(format!("xruns {}", app.session.xruns())).size(12).color(style::DIM),
    ]
    .spacing(2)
    .width(80);

    let recording = app.session.take_seconds();
    let record_label = match recording {
        Some(s) => format!("● REC {:02}:{:02}", (s / 60.0) as u64, (s % 60.0) as u64),
        None => "● Record".to_owned(),
    };
    let record = button(text(record_label).size(14))
        .padding([6, 12])
        .style(style::flat(recording.is_some()))
        .on_press(Message::ToggleRecord);
    let settings = match app.screen {
        Screen::Board => flat_button("Settings", Message::Show(Screen::Settings)),
        Screen::Settings => flat_button("Board", Message::Show(Screen::Board)),
    };

    let first =
        row![title, Space::new().width(4), preset, Space::new().width(Length::Fill), tuner, meters, load, settings]
            .spacing(12)
            .align_y(Alignment::Center);
    let take = match (recording, app.session.take_name()) {
        (Some(_), Some(name)) => text(format!("{name} (board output + dry input)")).size(13).color(style::TEXT),
        _ => text("Space records a take · ←/→ presets · B bypasses the selected pedal").size(13).color(style::DIM),
    };
    let second = row![
        record,
        take.wrapping(iced::widget::text::Wrapping::None).width(Length::FillPortion(1)),
        // One line: a long monitor line is cut, not wrapped into the board.
        text(app.midi_activity())
            .size(13)
            .color(style::WARN)
            .wrapping(iced::widget::text::Wrapping::None)
            .align_x(iced::alignment::Horizontal::Right)
            .width(Length::FillPortion(1)),
        button(text("MIDI Learn").size(13))
            .padding([3, 10])
            .style(style::flat(app.learn.is_some()))
            .on_press(Message::ToggleLearn),
        button(text("Rename").size(13))
            .padding([3, 10])
            .style(style::flat(false))
            .on_press(Message::StartNaming { rename: true }),
        button(text("Delete").size(13)).padding([3, 10]).style(style::flat(false)).on_press(Message::DeletePreset),
    ]
    .spacing(12)
    .align_y(Alignment::Center);

    container(column![first, second].spacing(8)).padding([10, 16]).width(Length::Fill).style(style::bar).into()
}
