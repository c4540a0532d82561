//! The menu-bar app: the tao event loop on the main thread, with the tray
//! icon and its menu.
//!
//! The loop only reacts to user events, so it waits instead of polling.
//! The runtime sends [`UserEvent`]s through an `EventLoopProxy`, and menu
//! clicks go back to the runtime as [`GuiCommand`]s on a tokio channel, so
//! the GUI thread never blocks on the runtime.

pub mod icons;
pub mod menu;

use std::sync::Mutex;
use std::time::SystemTime;

use tao::event::{Event, StartCause};
use tao::event_loop::{ControlFlow, EventLoop, EventLoopBuilder, EventLoopProxy};
use tokio::sync::mpsc;
use tracing::{info, warn};
use tray_icon::menu::MenuEvent;
use tray_icon::{TrayIcon, TrayIconBuilder};

use crate::gui::{GuiCommand, GuiEvents};
use crate::session::{Phase, Status};
use menu::TrayMenu;

/// Events the GUI thread reacts to.
#[derive(Debug)]
pub enum UserEvent {
    /// The session changed, or a minute passed: redraw the status.
    Status(Status),
    Menu(MenuEvent),
    /// The runtime has shut down; the app exits.
    RuntimeStopped,
}

impl GuiEvents for Mutex<EventLoopProxy<UserEvent>> {
    fn status(&self, status: Status) -> bool {
        let proxy = self.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        proxy.send_event(UserEvent::Status(status)).is_ok()
    }

    fn runtime_stopped(&self) {
        let proxy = self.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = proxy.send_event(UserEvent::RuntimeStopped);
    }
}

/// The event loop, created before the runtime starts so that the runtime
/// can be handed a proxy.
pub struct Gui {
    event_loop: EventLoop<UserEvent>,
}

impl Gui {
    /// Creates the event loop on the calling thread, which must be the main
    /// thread. Returns an error instead of panicking when the display
    /// cannot be opened.
    pub fn new() -> Result<Self, String> {
        // tao panics when GTK cannot open the display. The panic is caught,
        // so the default hook's message and backtrace would only mislead.
        let previous_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let built =
            std::panic::catch_unwind(|| EventLoopBuilder::<UserEvent>::with_user_event().build());
        std::panic::set_hook(previous_hook);
        #[allow(unused_mut)]
        let mut event_loop = built.map_err(|_| "cannot open the display".to_owned())?;
        #[cfg(target_os = "macos")]
        {
            // A bare binary would otherwise get a Dock icon and a Cmd-Tab entry.
            use tao::platform::macos::{ActivationPolicy, EventLoopExtMacOS};
            event_loop.set_activation_policy(ActivationPolicy::Accessory);
        }
        Ok(Self { event_loop })
    }

    /// Returns the handle through which the runtime reaches this loop.
    pub fn events(&self) -> Box<dyn GuiEvents> {
        Box::new(Mutex::new(self.event_loop.create_proxy()))
    }

    /// Runs the event loop; it exits the process (status 0) once the
    /// runtime reports that it has stopped.
    pub fn run(
        self,
        profile: String,
        initial: Status,
        commands: mpsc::UnboundedSender<GuiCommand>,
    ) -> ! {
        let proxy = Mutex::new(self.event_loop.create_proxy());
        MenuEvent::set_event_handler(Some(move |event| {
            if let Ok(proxy) = proxy.lock() {
                let _ = proxy.send_event(UserEvent::Menu(event));
            }
        }));

        let menu = TrayMenu::new(&profile);
        let mut tray: Option<TrayIcon> = None;
        let mut status = initial;
        let mut quitting = false;
        self.event_loop.run(move |event, _target, control_flow| {
            *control_flow = ControlFlow::Wait;
            match event {
                // The icon is created once the loop runs, as macOS requires.
                Event::NewEvents(StartCause::Init) => {
                    tray = build_tray(&menu, &status);
                    menu.update(&status, SystemTime::now());
                }
                Event::UserEvent(UserEvent::Status(new_status)) => {
                    status = new_status;
                    if !quitting {
                        menu.update(&status, SystemTime::now());
                    }
                    if let Some(tray) = &tray {
                        show_status(tray, &status);
                    }
                }
                Event::UserEvent(UserEvent::Menu(event)) => {
                    let command = match event.id.as_ref() {
                        menu::ENTER_CODE_ID => Some(GuiCommand::EnterCode),
                        menu::CLEAR_SESSION_ID => Some(GuiCommand::ClearSession),
                        menu::QUIT_ID => {
                            quitting = true;
                            menu.show_quitting();
                            Some(GuiCommand::Quit)
                        }
                        _ => None,
                    };
                    if let Some(command) = command {
                        info!(?command, "menu item chosen");
                        if commands.send(command).is_err() {
                            warn!("the runtime has stopped; exiting");
                            *control_flow = ControlFlow::ExitWithCode(0);
                        }
                    }
                }
                Event::UserEvent(UserEvent::RuntimeStopped) => {
                    drop(tray.take());
                    *control_flow = ControlFlow::ExitWithCode(0);
                }
                _ => {}
            }
        })
    }
}

fn build_tray(menu: &TrayMenu, status: &Status) -> Option<TrayIcon> {
    let builder = TrayIconBuilder::new()
        .with_id("aws-mock-metadata")
        .with_menu(Box::new(menu.menu.clone()))
        .with_tooltip(tooltip(status));
    #[cfg(target_os = "macos")]
    let builder = builder.with_icon_templated(icons::for_phase(status.phase));
    #[cfg(not(target_os = "macos"))]
    let builder = builder.with_icon(icons::for_phase(status.phase));
    let built = builder.build();
    match built {
        Ok(tray) => {
            info!("tray icon created");
            show_status(&tray, status);
            Some(tray)
        }
        Err(err) => {
            warn!(
                "cannot create the tray icon: {err}; use the management API or restart with --headless"
            );
            None
        }
    }
}

fn show_status(tray: &TrayIcon, status: &Status) {
    let now = SystemTime::now();
    let icon = Some(icons::for_phase(status.phase));
    #[cfg(target_os = "macos")]
    let updated = tray.set_icon_templated(icon);
    #[cfg(not(target_os = "macos"))]
    let updated = tray.set_icon(icon);
    if let Err(err) = updated {
        warn!("cannot update the tray icon: {err}");
    }
    // NOTE: libayatana-appindicator exports no tooltip, so on Linux the
    // status shows in the menu only.
    let _ = tray.set_tooltip(Some(tooltip(status)));
    // Only macOS shows a title next to the icon; the countdown goes there.
    if cfg!(target_os = "macos") {
        let title = menu::short_countdown(status, now);
        tray.set_title(if status.phase == Phase::NoSession || title.is_empty() {
            None
        } else {
            Some(title)
        });
    }
}

fn tooltip(status: &Status) -> String {
    format!(
        "aws-mock-metadata: {}",
        menu::status_line(status, SystemTime::now())
    )
}
