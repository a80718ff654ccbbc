//! Colours and widget styles: a dark stage theme, one colour per pedal kind.
//!
//! Everything visual that is not layout lives here, so the board's look can be tuned in one place.

use iced::widget::{button, container};
use iced::{Background, Border, Color, Shadow, Theme, Vector, color};

/// Window background: near black, so the pedals carry the colour.
pub const BACKGROUND: Color = color!(0x15171b);
/// Bars and panels, one step up from the background.
pub const PANEL: Color = color!(0x1e2126);
/// Raised surfaces inside panels (list rows, inputs).
pub const RAISED: Color = color!(0x2a2e35);
pub const TEXT: Color = color!(0xe8e8ea);
/// Secondary text: units, hints, paths.
pub const DIM: Color = color!(0x9aa0a8);
/// Selection and focus.
pub const ACCENT: Color = color!(0xf5c451);
pub const GOOD: Color = color!(0x3fbf5f);
pub const WARN: Color = color!(0xe0a030);
pub const DANGER: Color = color!(0xe5484d);
/// LED of an engaged pedal, and its dimmed off state.
pub const LED_ON: Color = color!(0xff4040);
pub const LED_OFF: Color = color!(0x4a1c1c);

/// The stage theme: dark, high contrast, warm accent.
pub fn theme() -> Theme {
    Theme::custom(
        "Neuralboard Stage",
        iced::theme::Palette {
            background: BACKGROUND,
            text: TEXT,
            primary: ACCENT,
            success: GOOD,
            warning: WARN,
            danger: DANGER,
        },
    )
}

/// A pedal's enclosure colour, by kind; unknown kinds (newer presets) get a neutral grey.
pub fn pedal_color(kind: &str) -> Color {
    match kind {
        "gate" => color!(0x5b606a),
        "amp" => color!(0xa35b1b),
        "cab" => color!(0x6b4a2e),
        "gain" => color!(0x2f5d7c),
        "compressor" => color!(0x1f7a6e),
        "phaser" => color!(0x6e3fbf),
        "flanger" => color!(0x8a3f9f),
        "reverb" => color!(0x1e3a66),
        _ => color!(0x4a4f57),
    }
}

/// A lighter or darker shade of `c` (`amount` > 0 lightens).
pub fn shade(c: Color, amount: f32) -> Color {
    let f = |v: f32| if amount >= 0.0 { v + (1.0 - v) * amount } else { v * (1.0 + amount) };
    Color { r: f(c.r), g: f(c.g), b: f(c.b), a: c.a }
}

/// The enclosure of a pedal on the board.
pub fn pedal_card(kind: &str, selected: bool, drop_target: bool, bypassed: bool) -> container::Style {
    let base = pedal_color(kind);
    let body = if bypassed { shade(base, -0.35) } else { base };
    let border = if drop_target {
        Border { color: Color::WHITE, width: 3.0, radius: 12.0.into() }
    } else if selected {
        Border { color: ACCENT, width: 3.0, radius: 12.0.into() }
    } else {
        Border { color: shade(base, -0.5), width: 1.0, radius: 12.0.into() }
    };
    container::Style {
        text_color: Some(TEXT),
        background: Some(Background::Color(body)),
        border,
        shadow: Shadow {
            color: Color::from_rgba(0.0, 0.0, 0.0, 0.5),
            offset: Vector::new(0.0, 4.0),
            blur_radius: 10.0,
        },
        snap: true,
    }
}

/// The empty "add a pedal" slot at the end of the chain.
pub fn add_card(hovered: bool) -> container::Style {
    container::Style {
        text_color: Some(DIM),
        background: hovered.then_some(Background::Color(PANEL)),
        border: Border { color: if hovered { ACCENT } else { RAISED }, width: 2.0, radius: 12.0.into() },
        ..container::Style::default()
    }
}

/// Top bar, status bar, detail panel.
pub fn panel(_: &Theme) -> container::Style {
    container::Style {
        text_color: Some(TEXT),
        background: Some(Background::Color(PANEL)),
        border: Border { color: RAISED, width: 1.0, radius: 8.0.into() },
        ..container::Style::default()
    }
}

/// A full-width bar without rounded corners.
pub fn bar(_: &Theme) -> container::Style {
    container::Style {
        text_color: Some(TEXT),
        background: Some(Background::Color(PANEL)),
        ..container::Style::default()
    }
}

/// The empty track of a small bar meter.
pub fn meter_track(_: &Theme) -> container::Style {
    container::Style {
        background: Some(Background::Color(shade(PANEL, -0.3))),
        border: Border { color: RAISED, width: 1.0, radius: 3.0.into() },
        ..container::Style::default()
    }
}

/// The lit part of a small bar meter, in the pedal's colour.
pub fn meter_fill(color: Color) -> container::Style {
    container::Style {
        background: Some(Background::Color(color)),
        border: Border { radius: 3.0.into(), ..Border::default() },
        ..container::Style::default()
    }
}

/// A round LED.
pub fn led(on: bool) -> container::Style {
    container::Style {
        background: Some(Background::Color(if on { LED_ON } else { LED_OFF })),
        border: Border { color: Color::BLACK, width: 1.0, radius: 6.0.into() },
        shadow: if on {
            Shadow { color: Color::from_rgba(1.0, 0.2, 0.2, 0.7), offset: Vector::ZERO, blur_radius: 8.0 }
        } else {
            Shadow::default()
        },
        ..container::Style::default()
    }
}

/// The metal footswitch.
pub fn footswitch(_: &Theme, status: button::Status) -> button::Style {
    let face = match status {
        button::Status::Pressed => color!(0x9aa0a8),
        button::Status::Hovered => color!(0xe0e3e8),
        _ => color!(0xc8ccd2),
    };
    button::Style {
        background: Some(Background::Color(face)),
        text_color: Color::BLACK,
        border: Border { color: color!(0x55595f), width: 3.0, radius: 22.0.into() },
        shadow: Shadow { color: Color::from_rgba(0.0, 0.0, 0.0, 0.6), offset: Vector::new(0.0, 2.0), blur_radius: 4.0 },
        snap: true,
    }
}

/// Flat buttons of the bars and panels; `active` marks a pressed toggle (record, learn).
pub fn flat(active: bool) -> impl Fn(&Theme, button::Status) -> button::Style {
    move |_, status| {
        let background = match (active, status) {
            (true, _) => shade(DANGER, -0.2),
            (false, button::Status::Hovered) => shade(RAISED, 0.12),
            (false, button::Status::Pressed) => shade(RAISED, 0.25),
            (false, button::Status::Disabled) => PANEL,
            (false, _) => RAISED,
        };
        button::Style {
            background: Some(Background::Color(background)),
            text_color: if status == button::Status::Disabled { DIM } else { TEXT },
            border: Border { color: shade(RAISED, 0.15), width: 1.0, radius: 6.0.into() },
            shadow: Shadow::default(),
            snap: true,
        }
    }
}

/// A row of a list (model browser, presets, mappings); `selected` highlights it.
pub fn list_row(selected: bool) -> impl Fn(&Theme, button::Status) -> button::Style {
    move |_, status| {
        let background = match (selected, status) {
            (true, _) => Some(Background::Color(shade(RAISED, 0.1))),
            (false, button::Status::Hovered) => Some(Background::Color(RAISED)),
            _ => None,
        };
        button::Style {
            background,
            text_color: TEXT,
            border: Border { radius: 4.0.into(), ..Border::default() },
            shadow: Shadow::default(),
            snap: true,
        }
    }
}
