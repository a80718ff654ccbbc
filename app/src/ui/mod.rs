//! The pedalboard window (iced).
//!
//! - [`app`]: state, messages, update, layout; the only place that holds the engine's
//!   [`neuralboard_engine::Controller`].
//! - [`board`]: the pedals and the selected pedal's panel; [`topbar`]: presets, tuner, meters, record;
//!   [`settings`]: devices and MIDI mappings.
//! - [`knob`], [`pad`], [`meter`]: the custom widgets; [`style`]: colours and styles.
//! - [`session`]: the audio session (live devices, or the engine run offline); [`library`]: the preset files.

mod app;
mod board;
mod knob;
mod library;
mod meter;
mod pad;
mod session;
mod settings;
mod style;
mod topbar;

#[cfg(test)]
mod tests;

pub use app::Options;
use app::{App, WINDOW_SIZE};

/// The window's application id (Wayland) and class (X11): the name of the installed `neuralboard.desktop`, by
/// which a desktop gives the window that entry's icon and name. iced leaves it empty.
#[cfg(target_os = "linux")]
const APPLICATION_ID: &str = "neuralboard";

/// Opens the window and runs until it is closed.
pub fn run(options: Options) -> anyhow::Result<()> {
    let window = iced::window::Settings {
        size: WINDOW_SIZE.into(),
        #[cfg(target_os = "linux")]
        platform_specific: iced::window::settings::PlatformSpecific {
            application_id: APPLICATION_ID.to_owned(),
            ..Default::default()
        },
        ..iced::window::Settings::default()
    };
    iced::application(move || App::new(options.clone()), App::update, App::view)
        .title(App::title)
        .theme(App::theme)
        .subscription(App::subscription)
        .window(window)
        .antialiasing(true)
        .run()
        .map_err(|e| anyhow::anyhow!("the window could not be opened: {e}"))
}
