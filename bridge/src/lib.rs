//! MQTT → Runnel bridge. Filled by the bridge issue; empty until then so the workspace builds.
