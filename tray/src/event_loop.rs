//! The menu-bar app: the tao event loop on the main thread, with the tray
//! icon and its menu.
//!
//! The loop only reacts to user events, so it waits instead of polling.
//! The runtime posts [`UserEvent`]s through an `EventLoopProxy`, and menu
//! clicks go back to the runtime as [`Command`]s through the executable's
//! callback, so the GUI thread never blocks on the runtime.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::SystemTime;

use aws_mock_metadata_tray_abi::{Command, Phase, Status};
use tao::event::{Event, StartCause};
use tao::event_loop::{ControlFlow, EventLoop, EventLoopBuilder};
use tray_icon::menu::MenuEvent;
use tray_icon::{TrayIcon, TrayIconBuilder};

use crate::host_log;
use crate::icons;
use crate::menu::{self, TrayMenu};

/// Events the GUI thread reacts to.
#[derive(Debug)]
pub enum UserEvent {
    /// The session changed, or a minute passed: redraw the status.
    Status(Status),
    Menu(MenuEvent),
    /// The runtime has shut down; the app exits.
    RuntimeStopped,
}

/// Creates the event loop on the calling thread, which must be the main
/// thread. Returns an error instead of panicking when the display cannot be
/// opened.
pub fn open() -> Result<EventLoop<UserEvent>, String> {
    // tao panics when GTK cannot open the display. The panic is caught,
    // so the panic hook's log line would only mislead.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let built = catch_unwind(|| EventLoopBuilder::<UserEvent>::with_user_event().build());
    std::panic::set_hook(previous_hook);
    #[allow(unused_mut)]
    let mut event_loop = built.map_err(|_| "cannot open the display".to_owned())?;
    #[cfg(target_os = "macos")]
    {
        // A bare binary would otherwise get a Dock icon and a Cmd-Tab entry.
        use tao::platform::macos::{ActivationPolicy, EventLoopExtMacOS};
        event_loop.set_activation_policy(ActivationPolicy::Accessory);
    }
    Ok(event_loop)
}

/// Runs the event loop; it exits the process (status 0) once the runtime
/// reports that it has stopped. `commands` gets each menu choice and
/// returns false once the runtime is gone.
pub fn run<C>(event_loop: EventLoop<UserEvent>, initial: Status, commands: C) -> !
where
    C: FnMut(Command) -> bool + 'static,
{
    let proxy = Mutex::new(event_loop.create_proxy());
    MenuEvent::set_event_handler(Some(move |event| {
        if let Ok(proxy) = proxy.lock() {
            let _ = proxy.send_event(UserEvent::Menu(event));
        }
    }));

    let mut app = TrayApp {
        menu: TrayMenu::new(&initial.profile),
        tray: None,
        status: initial,
        quitting: false,
        commands,
    };
    event_loop.run(move |event, _target, control_flow| {
        *control_flow = ControlFlow::Wait;
        // Unwinding into tao's platform code (GTK, AppKit) is undefined
        // behaviour, so a panic ends here. The panic hook has logged it.
        let handled = catch_unwind(AssertUnwindSafe(|| app.handle(event, control_flow)));
        if handled.is_err() {
            host_log::error("the tray skipped an event because its handler panicked");
        }
    })
}

/// The state of the GUI thread between events.
struct TrayApp<C> {
    menu: TrayMenu,
    tray: Option<TrayIcon>,
    status: Status,
    quitting: bool,
    commands: C,
}

impl<C: FnMut(Command) -> bool> TrayApp<C> {
    fn handle(&mut self, event: Event<'_, UserEvent>, control_flow: &mut ControlFlow) {
        match event {
            // The icon is created once the loop runs, as macOS requires.
            Event::NewEvents(StartCause::Init) => {
                self.tray = build_tray(&self.menu, &self.status);
                self.menu.update(&self.status, SystemTime::now());
            }
            Event::UserEvent(UserEvent::Status(new_status)) => {
                self.status = new_status;
                if !self.quitting {
                    self.menu.update(&self.status, SystemTime::now());
                }
                if let Some(tray) = &self.tray {
                    show_status(tray, &self.status);
                }
            }
            Event::UserEvent(UserEvent::Menu(event)) => {
                let command = match event.id.as_ref() {
                    menu::ENTER_CODE_ID => Some(Command::EnterCode),
                    menu::CLEAR_SESSION_ID => Some(Command::ClearSession),
                    menu::QUIT_ID => {
                        self.quitting = true;
                        self.menu.show_quitting();
                        Some(Command::Quit)
                    }
                    _ => None,
                };
                if let Some(command) = command {
                    host_log::info(&format!("menu item chosen command={command:?}"));
                    if !(self.commands)(command) {
                        host_log::warn("the runtime has stopped; exiting");
                        *control_flow = ControlFlow::ExitWithCode(0);
                    }
                }
            }
            Event::UserEvent(UserEvent::RuntimeStopped) => {
                // Set first, so that the app exits even if removing the
                // icon panics.
                *control_flow = ControlFlow::ExitWithCode(0);
                drop(self.tray.take());
            }
            _ => {}
        }
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
            host_log::info("tray icon created");
            show_status(&tray, status);
            Some(tray)
        }
        Err(err) => {
            host_log::warn(&format!(
                "cannot create the tray icon: {err}; use the management API or restart with --headless"
            ));
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
        host_log::warn(&format!("cannot update the tray icon: {err}"));
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
