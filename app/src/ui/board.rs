//! The board: pedals left to right in chain order, drag to reorder, the palette to add more, and the panel of the
//! selected pedal (model browser and model facts for amps and cabs).

use std::path::{Path, PathBuf};

use iced::widget::{Column, Row, Space, button, canvas, column, container, mouse_area, row, scrollable, text};
use iced::{Alignment, Element, Font, Length, font};
use neuralboard_engine::param::Unit;
use neuralboard_engine::pedal::PadInfo;
use neuralboard_engine::preset::FACTORY_PREFIX;
use neuralboard_engine::{ParamId, SlotState, SlotStatus, effects, paths};

use super::app::{App, Message, flat_button};
use super::knob::Knob;
use super::pad::{Pad, describe};
use super::style;

/// Height of every pedal, so the row lines up.
const CARD_HEIGHT: f32 = 344.0;
/// Width of one knob column on a pedal.
const KNOB_CELL: f32 = 68.0;
const KNOB_SIZE: f32 = 46.0;
const BOLD: Font = Font { weight: font::Weight::Bold, ..Font::DEFAULT };

/// A file the model browser offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    pub path: PathBuf,
    /// "factory" or the folder it is in, for the list.
    pub origin: String,
}

/// The player's folder for a pedal kind's files (models for amps, impulse responses for cabs).
pub fn user_folder_for(kind: &str) -> Option<PathBuf> {
    let dirs = paths::UserDirs::locate()?;
    match kind {
        "cab" => Some(dirs.irs),
        _ => Some(dirs.models),
    }
}

fn factory_folder_for(kind: &str) -> PathBuf {
    match kind {
        "cab" => paths::factory_root().join("assets/ir"),
        _ => paths::factory_root().join("assets/models").join(kind),
    }
}

fn list_files(dir: &Path, extension: &str, origin: &str, out: &mut Vec<ModelFile>) {
    let Ok(read) = std::fs::read_dir(dir) else { return };
    let mut found: Vec<ModelFile> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case(extension)))
        .map(|path| ModelFile { path, origin: origin.to_owned() })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    out.extend(found);
}

/// The files a pedal kind can play: the player's folder first, then the shipped ones.
pub fn models_for(kind: &str) -> Vec<ModelFile> {
    let extension = if kind == "cab" { "wav" } else { "nam" };
    let mut files = Vec::new();
    if let Some(dir) = user_folder_for(kind) {
        let origin = dir.display().to_string();
        list_files(&dir, extension, &origin, &mut files);
    }
    list_files(&factory_folder_for(kind), extension, "factory", &mut files);
    files
}

/// How a preset should name a file: shipped files as `factory:…` so the preset works on any machine.
pub fn preset_path_for(path: &Path) -> String {
    let root = paths::factory_root();
    match path.strip_prefix(&root) {
        Ok(relative) => format!("{FACTORY_PREFIX}{}", relative.to_string_lossy()),
        Err(_) => path.to_string_lossy().into_owned(),
    }
}

fn resolved_model(slot: &SlotState) -> Option<PathBuf> {
    slot.model.as_deref().map(|m| neuralboard_engine::preset::resolve_model_path(m, None))
}

/// The file before or after the pedal's current one in the browser, wrapping around.
pub fn neighbour_model(app: &App, slot: neuralboard_engine::SlotId, step: i32) -> Option<PathBuf> {
    let state = app.session.controller.slot(slot)?;
    let files = models_for(state.kind());
    if files.is_empty() {
        return None;
    }
    let current = resolved_model(state);
    let n = files.len() as i32;
    let index = match files.iter().position(|f| Some(&f.path) == current.as_ref()) {
        Some(i) => (i as i32 + step).rem_euclid(n),
        None => 0,
    };
    Some(files[index as usize].path.clone())
}

/// One knob with its name and value.
fn knob_cell<'a>(slot: &SlotState, index: usize, accent: iced::Color) -> Element<'a, Message> {
    let spec = &slot.info.params[index];
    let value = slot.values[index];
    let id = slot.id;
    let param = ParamId(index as u16);
    let knob = Knob {
        value: spec.to_normalized(value),
        default: spec.to_normalized(spec.default),
        color: accent,
        on_event: move |event| Message::Knob(id, param, event),
    };
    column![
        canvas(knob).width(KNOB_SIZE).height(KNOB_SIZE),
        text(spec.name).size(12).color(style::TEXT),
        text(spec.format(value)).size(11).color(style::shade(style::TEXT, -0.2)),
    ]
    .align_x(Alignment::Center)
    .spacing(1)
    .width(KNOB_CELL)
    .into()
}

/// An on/off parameter: a small switch with its LED.
fn toggle_cell<'a>(slot: &SlotState, index: usize) -> Element<'a, Message> {
    let spec = &slot.info.params[index];
    let on = slot.values[index] >= 0.5;
    let led = container(Space::new().width(8).height(8)).style(move |_| style::led(on));
    button(row![led, text(spec.name).size(11)].spacing(5).align_y(Alignment::Center))
        .padding([2, 6])
        .style(style::list_row(false))
        .on_press(Message::ToggleParam(slot.id, ParamId(index as u16)))
        .into()
}

/// Heights on a card, measured on a screenshot: a row of knobs (knob, name, value) with the grid's spacing, a row
/// of switches, the gain-reduction meter, and what every card spends besides (padding, name, model line, LED and
/// footswitch).
const KNOB_ROW: f32 = 87.0;
const TOGGLE_ROW: f32 = 22.0;
const METER_BLOCK: f32 = 46.0;
const CARD_FIXED: f32 = 140.0;
/// Switches sit two to a row under the knobs.
const TOGGLES_PER_ROW: usize = 2;
/// Side of the XY pad.
const PAD_SIZE: f32 = 150.0;

/// The knobs a card draws: its parameters except switches and those on its XY pad.
fn knob_indices(slot: &SlotState) -> Vec<usize> {
    let on_pad = |i: usize| slot.info.pad.as_ref().is_some_and(|p| p.x.0 as usize == i || p.y.0 as usize == i);
    (0..slot.info.params.len()).filter(|&i| slot.info.params[i].unit != Unit::Toggle && !on_pad(i)).collect()
}

fn toggle_indices(slot: &SlotState) -> Vec<usize> {
    (0..slot.info.params.len()).filter(|&i| slot.info.params[i].unit == Unit::Toggle).collect()
}

/// Knob columns for a card: squarish grids (2 × 2 for four, 3 × 2 for six), but wide enough that the rows leave
/// room for the switches, the meter and the footswitch, which must never fall off the card.
fn knob_columns(slot: &SlotState, meter: bool) -> usize {
    let knobs = knob_indices(slot).len();
    if slot.info.pad.is_some() {
        // Beside the pad: as many rows as fit its height.
        return knobs.div_ceil(2).clamp(1, 3);
    }
    let toggle_rows = toggle_indices(slot).len().div_ceil(TOGGLES_PER_ROW);
    let room = CARD_HEIGHT - CARD_FIXED - toggle_rows as f32 * TOGGLE_ROW - if meter { METER_BLOCK } else { 0.0 };
    let rows_that_fit = (((room + 8.0) / KNOB_ROW).floor() as usize).max(1);
    let squarish = match knobs {
        0..=1 => 1,
        2..=4 => 2,
        _ => 3,
    };
    (squarish..=knobs.max(1)).find(|&columns| knobs.div_ceil(columns) <= rows_that_fit).unwrap_or(knobs.max(1))
}

fn card_width(slot: &SlotState, meter: bool) -> f32 {
    let pad = if slot.info.pad.is_some() { PAD_SIZE + 8.0 } else { 0.0 };
    (pad + knob_columns(slot, meter) as f32 * KNOB_CELL + 24.0).max(128.0)
}

/// A pedal's XY pad with the room under the puck and the two axes' values (which MIDI learn can pick).
fn pad_cell<'a>(slot: &SlotState, pad: &PadInfo) -> Element<'a, Message> {
    let id = slot.id;
    let (x_spec, y_spec) = (&slot.info.params[pad.x.0 as usize], &slot.info.params[pad.y.0 as usize]);
    let (x, y) = (slot.values[pad.x.0 as usize], slot.values[pad.y.0 as usize]);
    let (nx, ny) = (x_spec.to_normalized(x), y_spec.to_normalized(y));
    let widget = Pad { x: nx, y: ny, map: pad.map.clone(), on_event: move |event| Message::Pad(id, event) };
    let axis = |param: ParamId, label: String| {
        button(text(label).size(11).color(style::shade(style::TEXT, -0.2)))
            .padding([0, 4])
            .style(style::list_row(false))
            .on_press(Message::PadAxis(id, param))
    };
    let room = pad.map.as_deref().map(|map| describe(map, nx, ny)).unwrap_or_default();
    column![
        canvas(widget).width(PAD_SIZE).height(PAD_SIZE),
        row![axis(pad.x, format!("X {}", x_spec.format(x))), axis(pad.y, format!("Y {}", y_spec.format(y))),]
            .spacing(4),
        text(room).size(12).color(style::TEXT),
        text("lighter: longer decay").size(10).color(style::shade(style::TEXT, -0.35)),
    ]
    .spacing(3)
    .align_x(Alignment::Center)
    .width(PAD_SIZE)
    .into()
}

fn subtitle(slot: &SlotState) -> String {
    match (&slot.info.model, &slot.status) {
        (_, SlotStatus::Missing { .. }) => "missing".to_owned(),
        (Some(model), _) => {
            let rate = model.sample_rate.map(|r| format!(" · {}k", (r / 1000.0).round())).unwrap_or_default();
            format!("{}{rate}", model.name)
        }
        (None, _) => String::new(),
    }
}

fn pedal_card<'a>(app: &'a App, index: usize, slot: &'a SlotState) -> Element<'a, Message> {
    let kind = slot.kind().to_owned();
    let accent = style::pedal_color(&kind);
    let mut body = Column::new().spacing(6).align_x(Alignment::Center).width(Length::Fill);
    body = body.push(text(slot.info.name.to_uppercase()).size(16).font(BOLD).color(style::TEXT));
    body = body.push(text(subtitle(slot)).size(11).color(style::shade(style::TEXT, -0.25)));

    if let SlotStatus::Missing { reason } = &slot.status {
        body = body.push(text(reason.clone()).size(11).color(style::shade(style::DANGER, 0.3)));
    }
    if let Some((_, error)) = app.pedal_errors.iter().find(|(s, _)| *s == slot.id) {
        body = body.push(text(format!("⚠ {error}")).size(10).color(style::shade(style::DANGER, 0.4)));
    }

    let meter = app.gain_reduction.get(slot.id);
    let knobs = knob_indices(slot);
    let columns = knob_columns(slot, meter.is_some());
    let mut grid = Column::new().spacing(8).align_x(Alignment::Center);
    for chunk in knobs.chunks(columns) {
        let mut line = Row::new().spacing(0);
        for &i in chunk {
            line = line.push(knob_cell(slot, i, accent));
        }
        grid = grid.push(line);
    }
    match &slot.info.pad {
        Some(pad) => body = body.push(row![pad_cell(slot, pad), grid].spacing(8).align_y(Alignment::Start)),
        None => body = body.push(grid),
    }
    let toggles = toggle_indices(slot);
    if !toggles.is_empty() {
        let mut list = Column::new().spacing(2).align_x(Alignment::Start);
        for pair in toggles.chunks(TOGGLES_PER_ROW) {
            list = list.push(Row::with_children(pair.iter().map(|&i| toggle_cell(slot, i))).spacing(4));
        }
        body = body.push(list);
    }
    if let Some(db) = meter {
        body = body.push(gain_reduction_meter(db, accent));
    }
    body = body.push(Space::new().height(Length::Fill));
    let engaged = !slot.bypassed;
    body = body.push(container(Space::new().width(12).height(12)).style(move |_| style::led(engaged)));
    body = body.push(
        button(Space::new().width(40).height(40))
            .padding(0)
            .style(style::footswitch)
            .on_press(Message::Footswitch(slot.id)),
    );

    let selected = app.selected == Some(slot.id);
    let drop_target = app.drag.is_some_and(|d| d.over == Some(index) && d.slot != slot.id);
    let bypassed = slot.bypassed;
    let card = container(body)
        .padding([12, 8])
        .width(card_width(slot, meter.is_some()))
        .height(CARD_HEIGHT)
        .style(move |_| style::pedal_card(&kind, selected, drop_target, bypassed));
    mouse_area(card)
        .on_press(Message::DragStart(slot.id))
        .on_enter(Message::DragOver(index))
        .interaction(if app.drag.is_some() {
            iced::mouse::Interaction::Grabbing
        } else {
            iced::mouse::Interaction::Grab
        })
        .into()
}

/// Gain reduction range the meter shows.
const GAIN_REDUCTION_FULL_SCALE_DB: f32 = 20.0;

/// A compressor's gain-reduction meter: a bar that grows from the right as the pedal pulls the level down, as on a
/// hardware unit, with the value in dB.
fn gain_reduction_meter<'a>(db: f32, accent: iced::Color) -> Element<'a, Message> {
    const WIDTH: f32 = 96.0;
    let fill = (db / GAIN_REDUCTION_FULL_SCALE_DB).clamp(0.0, 1.0) * WIDTH;
    let bar = container(
        container(Space::new().width(fill).height(6)).style(move |_| style::meter_fill(style::shade(accent, 0.6))),
    )
    .width(WIDTH)
    .align_right(WIDTH)
    .style(style::meter_track);
    column![
        text("GAIN REDUCTION").size(9).color(style::DIM),
        bar,
        text(format!("−{db:.1} dB")).size(11).color(style::TEXT),
    ]
    .spacing(3)
    .align_x(Alignment::Center)
    .into()
}

/// The dashed "+" slot at the end of the chain, and the palette it opens.
fn add_card(app: &App) -> Element<'_, Message> {
    let end = app.session.controller.slots().len();
    let over = app.drag.is_some_and(|d| d.over == Some(end));
    let content: Element<'_, Message> = if app.palette {
        let mut list = Column::new().spacing(4).push(text("Add a pedal").size(14).font(BOLD));
        for kind in effects::KINDS {
            list = list.push(
                button(column![text(kind.name).size(13), text(kind.description).size(10).color(style::DIM)])
                    .width(Length::Fill)
                    .style(style::list_row(false))
                    .on_press(Message::Add(kind.kind)),
            );
        }
        list = list.push(flat_button("Close", Message::Palette(false)));
        scrollable(list.padding(8)).into()
    } else {
        button(text("+").size(40).color(style::DIM))
            .style(iced::widget::button::text)
            .on_press(Message::Palette(true))
            .into()
    };
    let card = container(content)
        .center_x(if app.palette { 260.0 } else { 96.0 })
        .center_y(CARD_HEIGHT)
        .style(move |_| style::add_card(over || app.palette));
    mouse_area(card).on_enter(Message::DragOver(end)).into()
}

fn chain_line(app: &App) -> String {
    let names: Vec<String> = app
        .session
        .controller
        .slots()
        .iter()
        .map(|s| if s.bypassed { format!("{} (bypassed)", s.kind()) } else { s.kind().to_owned() })
        .collect();
    format!(
        "IN ▸ {} ▸ OUT   ·   drag a pedal to reorder · double-click a knob to reset · Shift for fine · wheel turns",
        names.join(" ▸ ")
    )
}

/// The selected pedal's panel: files and facts for model pedals, description and values for the rest.
fn detail(app: &App) -> Element<'_, Message> {
    let Some(slot) = app.selected.and_then(|id| app.session.controller.slot(id)) else {
        return container(text("Click a pedal to see its details.").color(style::DIM))
            .padding(16)
            .width(Length::Fill)
            .height(Length::Fill)
            .style(style::panel)
            .into();
    };
    let kind = effects::find(slot.kind());
    let title = format!(
        "{} · {}",
        slot.info.name.to_uppercase(),
        if kind.is_some_and(|k| k.needs_model) { "file" } else { "pedal" }
    );
    let left: Element<'_, Message> = if kind.is_some_and(|k| k.needs_model) {
        let current = resolved_model(slot);
        let mut list = Column::new().spacing(2);
        for file in models_for(slot.kind()) {
            let name = file.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let selected = Some(&file.path) == current.as_ref();
            list = list.push(
                button(text(format!("{name} · {}", file.origin)).size(13))
                    .width(Length::Fill)
                    .style(style::list_row(selected))
                    .on_press(Message::UseModel(slot.id, file.path.clone())),
            );
        }
        column![
            row![
                text(title).size(15).font(BOLD),
                Space::new().width(Length::Fill),
                flat_button("◀", Message::StepModel(slot.id, -1)),
                flat_button("▶", Message::StepModel(slot.id, 1)),
                flat_button("Open…", Message::OpenFile(slot.id)),
            ]
            .spacing(6)
            .align_y(Alignment::Center),
            scrollable(list).height(Length::Fill),
        ]
        .spacing(8)
        .into()
    } else {
        let mut values = Column::new().spacing(3);
        for (spec, value) in slot.info.params.iter().zip(&slot.values) {
            values = values.push(text(format!("{}: {}", spec.name, spec.format(*value))).size(13).color(style::DIM));
        }
        column![
            text(title).size(15).font(BOLD),
            text(kind.map_or("", |k| k.description)).size(13),
            scrollable(values).height(Length::Fill)
        ]
        .spacing(8)
        .into()
    };

    let mut facts = Column::new().spacing(4).push(text("Details").size(15).font(BOLD));
    if let Some(model) = &slot.info.model {
        let device_rate = app.session.controller.config().sample_rate;
        let rate = match model.sample_rate {
            Some(r) if (r - device_rate).abs() > 0.5 => {
                format!("{} Hz (board at {device_rate} Hz: resampled)", r)
            }
            Some(r) => format!("{r} Hz (no resampling)"),
            None => "unknown".to_owned(),
        };
        let lines = [
            ("Name".to_owned(), model.name.clone()),
            ("Architecture".to_owned(), format!("{} · {} weights", model.architecture, model.parameters)),
            ("Sample rate".to_owned(), rate),
        ];
        for (k, v) in lines.into_iter().chain(model.details.iter().cloned()) {
            facts = facts.push(text(format!("{k}: {v}")).size(13).color(style::DIM));
        }
    }
    if let SlotStatus::Missing { reason } = &slot.status {
        facts = facts.push(text(reason.clone()).size(13).color(style::DANGER));
    }
    let state = if slot.bypassed { "bypassed (B engages)" } else { "engaged (B bypasses)" };
    facts = facts.push(text(format!("State: {state} · mix {:.0} %", 100.0 * slot.mix)).size(13).color(style::DIM));
    let right = column![
        scrollable(facts.width(Length::Fill)).width(Length::Fill).height(Length::Fill),
        row![Space::new().width(Length::Fill), flat_button("Remove pedal", Message::Remove(slot.id))],
    ]
    .spacing(6);

    container(
        row![container(left).width(Length::FillPortion(1)), container(right).width(Length::FillPortion(1))].spacing(24),
    )
    .padding(14)
    .width(Length::Fill)
    .height(Length::Fill)
    .style(style::panel)
    .into()
}

pub fn view(app: &App) -> Element<'_, Message> {
    let mut pedals = Row::new().spacing(12).align_y(Alignment::Start);
    for (index, slot) in app.session.controller.slots().iter().enumerate() {
        pedals = pedals.push(pedal_card(app, index, slot));
    }
    pedals = pedals.push(add_card(app));
    let board = scrollable(container(pedals).padding([16, 16]))
        .direction(scrollable::Direction::Horizontal(scrollable::Scrollbar::new().width(6).scroller_width(6)));
    column![
        // Releasing anywhere over the board drops a dragged pedal where the cursor last entered one.
        mouse_area(board).on_release(Message::DragEnd),
        container(text(chain_line(app)).size(12).color(style::DIM)).padding([0, 16]),
        container(detail(app)).padding([8, 16]).height(Length::Fill),
    ]
    .spacing(4)
    .into()
}
