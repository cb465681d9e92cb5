//! `runnel-admin`: opens the window; everything else is in the library.

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
        Box::new(|cc| Ok(Box::new(runnel_admin::app::AdminApp::from_eframe(cc)?))),
    )
}
