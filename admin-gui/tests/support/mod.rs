//! What the GUI tests and the frame bench (`benches/frames.rs`, which includes this file) share:
//! the real [`AdminApp`] in an `egui_kittest` harness, connected on the Connections screen as a
//! user would, waiting for the background worker's answers by stepping the UI, and records
//! produced with a real Kafka client (rdkafka); [`cluster`] starts several real `runnel`
//! processes as one cluster.

// Each test target uses a part of this.
#![allow(dead_code)]

pub mod cluster;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use rdkafka::producer::FutureRecord;
use runnel_admin::app::AdminApp;
use runnel_admin::history::LagHistory;
use runnel_admin::profile::ProfileForm;
use runnel_admin::worker::Timing;
use runnel_tests::clients;

/// The timing of the tests: quick refreshes, short requests.
pub const TEST_TIMING: Timing = Timing {
    refresh: Duration::from_millis(300),
    request_timeout: Duration::from_secs(3),
};

/// A window big enough for every column of every screen.
pub const TEST_WINDOW: egui::Vec2 = egui::vec2(1400.0, 1000.0);

/// An app with no saved profiles or history, opening clusters with `timing`.
pub fn app(timing: Timing) -> Result<AdminApp> {
    Ok(AdminApp::new(
        Vec::new(),
        LagHistory::default(),
        timing,
        Arc::new(|| {}),
    )?)
}

/// The whole app drawn in a `size` window.
pub fn harness(app: AdminApp, size: egui::Vec2) -> Harness<'static, AdminApp> {
    Harness::builder()
        .with_size(size)
        .build_ui_state(|ui, app: &mut AdminApp| app.show(ui), app)
}

/// Saves a profile `name` through the form and clicks `Connect name`, as a user would; the
/// cluster's answers come later (see [`wait_for`]).
pub fn connect(harness: &mut Harness<'_, AdminApp>, name: &str, bootstrap: &str) {
    connect_with(
        harness,
        ProfileForm {
            name: name.into(),
            bootstrap: bootstrap.into(),
            ..ProfileForm::default()
        },
    );
}

/// Like [`connect`], with the whole profile form filled in (TLS, SASL).
pub fn connect_with(harness: &mut Harness<'_, AdminApp>, form: ProfileForm) {
    let name = form.name.clone();
    harness.state_mut().screen = runnel_admin::app::Screen::Connections;
    harness.state_mut().forms.new_profile = form;
    harness.step();
    harness.get_by_label("Save profile").click();
    // Twice: a grid sizes its columns from the frame before, so the new row moves once.
    harness.step();
    harness.step();
    harness.get_by_label(&format!("Connect {name}")).click();
    harness.step();
}

/// Steps the UI until `probe` holds (the worker answers in the background), for at most
/// `timeout`.
pub fn wait_for(
    harness: &mut Harness<'_, AdminApp>,
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut(&Harness<'_, AdminApp>) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        harness.step();
        if probe(harness) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a widget's label contains `text`.
pub fn has_label(h: &Harness<'_, AdminApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

/// How many widgets are labelled exactly `text`.
pub fn count_label(h: &Harness<'_, AdminApp>, text: &str) -> usize {
    h.query_all_by_label(text).count()
}

/// `records` records of `value_bytes` bytes, all to partition 0 of `topic`, acknowledged.
pub fn produce(bootstrap: &str, topic: &str, records: usize, value_bytes: usize) -> Result<()> {
    let value = "v".repeat(value_bytes);
    let producer = clients::producer(bootstrap, &[])?;
    tokio::runtime::Runtime::new()?.block_on(clients::send_all(
        &producer,
        (0..records).map(|_| {
            FutureRecord::<(), _>::to(topic)
                .payload(&value)
                .partition(0)
        }),
    ))?;
    Ok(())
}
