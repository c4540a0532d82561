//! The messages between the GUI thread and the runtime, kept apart from the
//! tray so that the runtime compiles without it (`--no-default-features`).

use crate::session::Status;

/// A request from the GUI to the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuiCommand {
    EnterCode,
    ClearSession,
    Quit,
}

/// The runtime's way to reach the GUI thread without blocking it.
pub trait GuiEvents: Send + Sync + 'static {
    /// Sends a status to show; returns false once the GUI is gone.
    fn status(&self, status: Status) -> bool;
    /// Tells the GUI that the runtime has stopped, so the app exits.
    fn runtime_stopped(&self);
}
