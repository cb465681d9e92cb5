//! Runnel admin GUI. Filled by the admin-GUI issue; empty until then so the workspace builds.
