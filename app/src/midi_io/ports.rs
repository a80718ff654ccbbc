//! MIDI input ports: the watcher that keeps every port connected (hot-plug), and midir underneath it.
//!
//! The watcher works through [`PortBackend`], so its hot-plug and retry logic is tested with a scripted backend;
//! [`MidirBackend`] is the real one.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use neuralboard_engine::midi::MidiParser;

use super::{Input, MidiNotice, MidiStats};

/// The name our connections have on the system (ALSA client name), and how our own ports are recognised.
pub const CLIENT_NAME: &str = "Neuralboard";

/// How often the watcher looks at the port list.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// While MIDI works: how soon a device plugged in is connected.
    pub poll: Duration,
    /// While MIDI cannot be opened: slower, as it usually stays so.
    pub retry: Duration,
}

impl Timing {
    pub const LIVE: Timing = Timing { poll: Duration::from_secs(1), retry: Duration::from_secs(5) };
}

/// An input port as listed. Both parts identify it: a device plugged in again may get another id, and another
/// device may get an old one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortInfo {
    /// The backend's stable id (ALSA: `client:port`).
    pub id: String,
    /// For people (ALSA: `client name:port name client:port`).
    pub name: String,
}

impl PortInfo {
    /// Ports of our own client: listening to them would feed us our own output.
    fn is_ours(&self) -> bool {
        self.name.starts_with(&format!("{CLIENT_NAME}:"))
    }
}

/// What the watcher needs from a MIDI system.
pub trait PortBackend: Send {
    /// The input ports, or why MIDI cannot be used at all.
    fn ports(&mut self) -> Result<Vec<PortInfo>, String>;
    /// Connects to a port; `feed` gets its bytes. Dropping the returned connection closes it.
    fn connect(&mut self, port: &PortInfo, feed: PortFeed) -> Result<Box<dyn Send>, String>;
}

/// One port's way into the service: its own parser, so running status never mixes between ports, and a sender to
/// the service thread. What a midir callback owns.
pub struct PortFeed {
    port: Arc<str>,
    parser: MidiParser,
    inputs: mpsc::Sender<Input>,
    stats: Arc<MidiStats>,
}

impl PortFeed {
    pub(super) fn new(port: &str, inputs: mpsc::Sender<Input>, stats: Arc<MidiStats>) -> Self {
        Self { port: port.into(), parser: MidiParser::new(), inputs, stats }
    }

    /// Parses bytes as they arrive (whole messages, parts of one, or several) and forwards each message.
    pub fn feed(&mut self, bytes: &[u8]) {
        let before = self.parser.malformed();
        let (port, inputs) = (&self.port, &self.inputs);
        self.parser.feed(bytes, |message| {
            // Fails only while the service shuts down.
            let _ = inputs.send(Input::Message { port: Arc::clone(port), message });
        });
        let malformed = self.parser.malformed() - before;
        if malformed > 0 {
            self.stats.malformed.fetch_add(malformed, Ordering::Relaxed);
        }
    }
}

/// The running port watcher. Dropping it stops the thread and closes every connection.
pub struct Watcher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    pub(super) fn spawn(
        backend: Box<dyn PortBackend>,
        timing: Timing,
        inputs: &mpsc::Sender<Input>,
        stats: &Arc<MidiStats>,
    ) -> Self {
        let (stop, stopped) = mpsc::channel();
        let mut state = WatchState {
            backend,
            inputs: inputs.clone(),
            stats: Arc::clone(stats),
            connected: BTreeMap::new(),
            failed: BTreeMap::new(),
            unavailable: None,
        };
        let thread = std::thread::Builder::new()
            .name("midi ports".into())
            .spawn(move || {
                loop {
                    let wait = state.poll(timing);
                    match stopped.recv_timeout(wait) {
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        _ => break,
                    }
                }
                state.disconnect_all();
            })
            .expect("the MIDI port watcher thread starts");
        Self { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct WatchState {
    backend: Box<dyn PortBackend>,
    inputs: mpsc::Sender<Input>,
    stats: Arc<MidiStats>,
    connected: BTreeMap<PortInfo, Box<dyn Send>>,
    /// Ports that could not be opened, with the reason reported: reported again only if it changes.
    failed: BTreeMap<PortInfo, String>,
    /// The reason last reported, while MIDI cannot be used.
    unavailable: Option<String>,
}

impl WatchState {
    /// Brings the connections in line with the port list; returns how long to wait before the next look.
    fn poll(&mut self, timing: Timing) -> Duration {
        let ports = match self.backend.ports() {
            Ok(ports) => ports,
            Err(reason) => {
                self.disconnect_all();
                if self.unavailable.as_ref() != Some(&reason) {
                    self.unavailable = Some(reason.clone());
                    self.notify(MidiNotice::Unavailable { reason });
                }
                return timing.retry;
            }
        };
        if self.unavailable.take().is_some() {
            self.notify(MidiNotice::Available);
        }
        let gone: Vec<PortInfo> = self.connected.keys().filter(|p| !ports.contains(p)).cloned().collect();
        for port in gone {
            self.connected.remove(&port);
            self.notify(MidiNotice::PortDisconnected { port: port.name });
        }
        self.failed.retain(|p, _| ports.contains(p));
        for port in ports {
            if port.is_ours() || self.connected.contains_key(&port) {
                continue;
            }
            let feed = PortFeed::new(&port.name, self.inputs.clone(), Arc::clone(&self.stats));
            match self.backend.connect(&port, feed) {
                Ok(connection) => {
                    self.failed.remove(&port);
                    self.notify(MidiNotice::PortConnected { port: port.name.clone() });
                    self.connected.insert(port, connection);
                }
                Err(reason) => {
                    if self.failed.get(&port) != Some(&reason) {
                        self.notify(MidiNotice::PortFailed { port: port.name.clone(), reason: reason.clone() });
                        self.failed.insert(port, reason);
                    }
                }
            }
        }
        timing.poll
    }

    fn disconnect_all(&mut self) {
        for (port, connection) in std::mem::take(&mut self.connected) {
            drop(connection);
            self.notify(MidiNotice::PortDisconnected { port: port.name });
        }
        self.failed.clear();
    }

    fn notify(&self, notice: MidiNotice) {
        let _ = self.inputs.send(Input::Notice(notice));
    }
}

/// The system's MIDI through midir (the ALSA sequencer on Linux).
#[derive(Default)]
pub struct MidirBackend {
    /// Kept open for listing; opened again after a failure.
    lister: Option<midir::MidiInput>,
}

impl PortBackend for MidirBackend {
    fn ports(&mut self) -> Result<Vec<PortInfo>, String> {
        let lister = match &mut self.lister {
            Some(lister) => lister,
            None => self.lister.insert(open_input()?),
        };
        Ok(lister
            .ports()
            .iter()
            // A port that went away between listing and naming is left for the next look.
            .filter_map(|port| Some(PortInfo { id: port.id(), name: lister.port_name(port).ok()? }))
            .collect())
    }

    fn connect(&mut self, port: &PortInfo, mut feed: PortFeed) -> Result<Box<dyn Send>, String> {
        // midir consumes a MidiInput per connection.
        let mut input = open_input()?;
        // Clock, active sensing and SysEx drive nothing here: not waking up for them saves work at 24 clocks a beat.
        input.ignore(midir::Ignore::All);
        let found = input.find_port_by_id(&port.id).ok_or_else(|| "the port went away".to_owned())?;
        let connection = input
            .connect(&found, &format!("{CLIENT_NAME} in"), move |_, bytes, _| feed.feed(bytes), ())
            .map_err(|e| e.to_string())?;
        Ok(Box::new(connection))
    }
}

fn open_input() -> Result<midir::MidiInput, String> {
    if let Some(problem) = sequencer_problem() {
        return Err(problem);
    }
    midir::MidiInput::new(CLIENT_NAME).map_err(|e| e.to_string())
}

/// Why the ALSA sequencer cannot be opened, found out before asking ALSA: its library prints its own error line on
/// every failed attempt, which would repeat on every retry. (midir's own error says only that MIDI "could not be
/// initialized".)
#[cfg(target_os = "linux")]
fn sequencer_problem() -> Option<String> {
    let seq = std::path::Path::new("/dev/snd/seq");
    if !seq.exists() {
        return Some(
            "no ALSA sequencer (/dev/snd/seq does not exist: load the snd-seq kernel module, or give this container \
             the host's /dev/snd)"
                .to_owned(),
        );
    }
    match std::fs::OpenOptions::new().read(true).write(true).open(seq) {
        Ok(_) => None,
        Err(e) => {
            Some(format!("cannot open the ALSA sequencer /dev/snd/seq: {e} (is your user in the 'audio' group?)"))
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn sequencer_problem() -> Option<String> {
    None
}

/// The input ports, by name, or why MIDI cannot be used: for `neuralboard midi ports`.
pub fn list_ports() -> Result<Vec<String>, String> {
    let ports = MidirBackend::default().ports()?;
    Ok(ports.into_iter().filter(|p| !p.is_ours()).map(|p| p.name).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;

    const FAST: Timing = Timing { poll: Duration::from_millis(5), retry: Duration::from_millis(5) };
    const PATIENCE: Duration = Duration::from_secs(10);

    /// What the scripted MIDI system lists and does; the test changes it while the watcher runs.
    struct System {
        /// `Err`: MIDI cannot be opened.
        ports: Result<Vec<PortInfo>, String>,
        /// Ports whose connection fails, with the reason.
        refuse: BTreeMap<String, String>,
        /// Open connections: the feed of each, by port name.
        open: BTreeMap<String, PortFeed>,
        polls: usize,
    }

    #[derive(Clone)]
    struct Scripted(Arc<Mutex<System>>);

    /// Closing a scripted connection forgets its feed, as closing a midir connection ends its callbacks.
    struct Connection(Scripted, String);

    impl Drop for Connection {
        fn drop(&mut self) {
            self.0.0.lock().unwrap().open.remove(&self.1);
        }
    }

    impl PortBackend for Scripted {
        fn ports(&mut self) -> Result<Vec<PortInfo>, String> {
            let mut system = self.0.lock().unwrap();
            system.polls += 1;
            system.ports.clone()
        }

        fn connect(&mut self, port: &PortInfo, feed: PortFeed) -> Result<Box<dyn Send>, String> {
            let mut system = self.0.lock().unwrap();
            if let Some(reason) = system.refuse.get(&port.name) {
                return Err(reason.clone());
            }
            system.open.insert(port.name.clone(), feed);
            Ok(Box::new(Connection(self.clone(), port.name.clone())))
        }
    }

    fn port(name: &str, id: &str) -> PortInfo {
        PortInfo { id: id.into(), name: name.into() }
    }

    struct Rig {
        system: Scripted,
        watcher: Option<Watcher>,
        inputs: mpsc::Receiver<Input>,
    }

    impl Rig {
        fn new(ports: Result<Vec<PortInfo>, String>) -> Self {
            Self::with(ports, BTreeMap::new())
        }

        fn with(ports: Result<Vec<PortInfo>, String>, refuse: BTreeMap<String, String>) -> Self {
            let system = Scripted(Arc::new(Mutex::new(System { ports, refuse, open: BTreeMap::new(), polls: 0 })));
            let (sender, inputs) = mpsc::channel();
            let watcher = Watcher::spawn(Box::new(system.clone()), FAST, &sender, &Arc::default());
            Rig { system, watcher: Some(watcher), inputs }
        }

        fn change(&self, f: impl FnOnce(&mut System)) {
            f(&mut self.system.0.lock().unwrap());
        }

        /// The next notice, as text.
        fn next(&self) -> String {
            match self.inputs.recv_timeout(PATIENCE).expect("the watcher reports") {
                Input::Notice(notice) => notice.to_string(),
                Input::Message { port, message } => format!("[{port}] {message}"),
                _ => "another input".into(),
            }
        }

        /// Lets the watcher poll a few more times, then returns what it reported meanwhile.
        fn settle(&self) -> Vec<String> {
            let target = self.system.0.lock().unwrap().polls + 3;
            let started = Instant::now();
            while self.system.0.lock().unwrap().polls < target {
                assert!(started.elapsed() < PATIENCE, "the watcher stopped polling");
                std::thread::sleep(Duration::from_millis(1));
            }
            std::iter::from_fn(|| self.inputs.try_recv().ok())
                .map(|input| match input {
                    Input::Notice(notice) => notice.to_string(),
                    _ => "another input".into(),
                })
                .collect()
        }

        fn open(&self) -> Vec<String> {
            self.system.0.lock().unwrap().open.keys().cloned().collect()
        }
    }

    #[test]
    fn ports_are_connected_as_they_appear_and_closed_as_they_go() {
        let rig = Rig::new(Ok(vec![port("Pedal:out 20:0", "20:0"), port("Neuralboard:ours 130:0", "130:0")]));
        assert_eq!(rig.next(), "MIDI port connected: Pedal:out 20:0");
        assert!(rig.settle().is_empty(), "our own port is left alone, a connected one is not connected again");
        assert_eq!(rig.open(), ["Pedal:out 20:0"]);

        rig.change(|s| s.ports.as_mut().unwrap().push(port("Keys:out 24:0", "24:0")));
        assert_eq!(rig.next(), "MIDI port connected: Keys:out 24:0");
        rig.change(|s| s.ports.as_mut().unwrap().retain(|p| p.id != "20:0"));
        assert_eq!(rig.next(), "MIDI port disconnected: Pedal:out 20:0");
        assert_eq!(rig.open(), ["Keys:out 24:0"], "its connection was closed");

        // The same device plugged in again under another id is a new port.
        rig.change(|s| s.ports.as_mut().unwrap().push(port("Keys:out 28:0", "28:0")));
        assert_eq!(rig.next(), "MIDI port connected: Keys:out 28:0");
    }

    #[test]
    fn bytes_from_a_port_reach_the_service_as_messages_named_by_port() {
        let rig = Rig::new(Ok(vec![port("Pedal:out 20:0", "20:0")]));
        assert_eq!(rig.next(), "MIDI port connected: Pedal:out 20:0");
        rig.change(|s| s.open.get_mut("Pedal:out 20:0").unwrap().feed(&[0xB0, 7]));
        rig.change(|s| s.open.get_mut("Pedal:out 20:0").unwrap().feed(&[100, 0xF8, 8, 1]));
        assert_eq!(rig.next(), "[Pedal:out 20:0] ch 1 CC 7 = 100", "a message split across reads");
        assert_eq!(rig.next(), "[Pedal:out 20:0] ch 1 CC 8 = 1");
    }

    #[test]
    fn unavailable_midi_is_reported_once_and_picked_up_when_it_appears() {
        let rig = Rig::new(Err("no ALSA sequencer".into()));
        assert_eq!(rig.next(), "MIDI unavailable: no ALSA sequencer");
        assert!(rig.settle().is_empty(), "once, however often it is retried");
        rig.change(|s| s.ports = Ok(vec![port("Pedal:out 20:0", "20:0")]));
        assert_eq!(rig.next(), "MIDI available");
        assert_eq!(rig.next(), "MIDI port connected: Pedal:out 20:0");
        // The sequencer going away closes every port.
        rig.change(|s| s.ports = Err("the sequencer went away".into()));
        assert_eq!(rig.next(), "MIDI port disconnected: Pedal:out 20:0");
        assert_eq!(rig.next(), "MIDI unavailable: the sequencer went away");
        assert!(rig.open().is_empty());
    }

    #[test]
    fn a_port_that_cannot_be_opened_is_reported_once_and_tried_again() {
        let refuse = [("Busy:out 20:0".to_owned(), "in use".to_owned())].into_iter().collect();
        let rig = Rig::with(Ok(vec![port("Busy:out 20:0", "20:0")]), refuse);
        assert_eq!(rig.next(), "MIDI port Busy:out 20:0 cannot be opened: in use");
        assert!(rig.settle().is_empty(), "once");
        rig.change(|s| {
            s.refuse.clear();
        });
        assert_eq!(rig.next(), "MIDI port connected: Busy:out 20:0");
    }

    #[test]
    fn stopping_the_watcher_closes_every_port() {
        let mut rig = Rig::new(Ok(vec![port("Pedal:out 20:0", "20:0"), port("Keys:out 24:0", "24:0")]));
        rig.next();
        rig.next();
        assert_eq!(rig.open().len(), 2);
        drop(rig.watcher.take());
        assert!(rig.open().is_empty());
    }
}
