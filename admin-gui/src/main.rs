//! `runnel-admin`: opens the window; everything else is in the library.
//!
//! For demos and the README screenshots (`scripts/screenshots.sh`), three environment
//! variables preconfigure the app when it starts; without them it starts on the Connections
//! screen with the saved profiles, as usual:
//! - `RUNNEL_ADMIN_CONNECT=name=host:port[;name=host:port…]`: saves these profiles and opens
//!   them (the last one is shown);
//! - `RUNNEL_ADMIN_SCREEN=SCREEN[:NAME]`: the first screen, one of `connections`, `brokers`,
//!   `topics`, `groups`, `messages`, `bridges`, `uplinks`, `access`; `NAME` is the topic or group to
//!   select, the topic whose partition 0 the message browser shows, or the uplink whose
//!   partitions are shown;
//! - `RUNNEL_ADMIN_REFRESH_MS=1000`: the refresh interval of the clusters opened this way.

use std::time::Duration;

use runnel_admin::app::{AdminApp, Screen};
use runnel_admin::state::Profile;
use runnel_admin::worker::{BrowseFrom, Command, actions::MAX_BROWSE};

fn main() -> eframe::Result {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUNNEL_ADMIN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([1200.0, 800.0])
            .with_title("Runnel admin"),
        ..Default::default()
    };
    eframe::run_native(
        "runnel-admin",
        options,
        Box::new(|cc| {
            let mut app = AdminApp::from_eframe(cc)?;
            preconfigure(&mut app);
            Ok(Box::new(app))
        }),
    )
}

/// Applies the `RUNNEL_ADMIN_*` variables described above.
fn preconfigure(app: &mut AdminApp) {
    let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(ms) = var("RUNNEL_ADMIN_REFRESH_MS").and_then(|v| v.trim().parse().ok()) {
        app.timing.refresh = Duration::from_millis(ms);
    }
    for spec in var("RUNNEL_ADMIN_CONNECT")
        .iter()
        .flat_map(|v| v.split(';'))
    {
        let Some((name, bootstrap)) = spec.split_once('=') else {
            tracing::warn!("RUNNEL_ADMIN_CONNECT: {spec:?} is not name=host:port");
            continue;
        };
        let profile = Profile::new(name.trim(), bootstrap.trim());
        app.profiles.retain(|p| p.name != profile.name);
        app.profiles.push(profile.clone());
        app.connect(profile);
    }
    let Some(spec) = var("RUNNEL_ADMIN_SCREEN") else {
        return;
    };
    let (screen, item) = match spec.split_once(':') {
        Some((s, item)) => (s.trim(), Some(item.trim().to_string())),
        None => (spec.trim(), None),
    };
    app.screen = match screen {
        "connections" => Screen::Connections,
        "brokers" => Screen::Brokers,
        "topics" => Screen::Topics,
        "groups" => Screen::Groups,
        "messages" => Screen::Messages,
        "bridges" => Screen::Bridges,
        "uplinks" => Screen::Uplinks,
        "access" => Screen::Access,
        other => {
            tracing::warn!("RUNNEL_ADMIN_SCREEN: unknown screen {other:?}");
            return;
        }
    };
    let (Some(id), Some(name)) = (app.current(), item) else {
        return;
    };
    match app.screen {
        Screen::Topics => {
            app.forms.selected_topic = Some(name.clone());
            app.worker.send(Command::LoadTopic { id, name });
        }
        Screen::Groups => {
            app.forms.selected_group = Some(name.clone());
            app.worker.send(Command::LoadGroup { id, group: name });
        }
        Screen::Messages => {
            app.forms.browse.topic = name.clone();
            app.worker.send(Command::Browse {
                id,
                topic: name,
                partition: 0,
                from: BrowseFrom::Latest(app.forms.browse.last),
                max: MAX_BROWSE,
            });
        }
        Screen::Uplinks => {
            app.forms.expanded_uplinks.insert(name);
        }
        _ => {}
    }
}
