//! The `scram` and `acls` databases. `scram`: `user | 0x00 | mechanism code` →
//! [`ScramCredential`] as JSON (user names with a NUL byte are refused before they get here);
//! `acls`: the binding as JSON → empty (a set; LMDB keys are at most 511 bytes, which a
//! binding of a legal topic name and a sane principal fits — longer ones are refused).

use heed::{RoTxn, RwTxn, WithoutTls};

use super::Db;
use super::keys::MAX_KEY_LEN;
use crate::log::{AclBinding, ScramCredential, ScramMechanism, StoreError};

fn scram_key(user: &str, mechanism: ScramMechanism) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 2);
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k.push(mechanism.code() as u8);
    k
}

fn acl_key(binding: &AclBinding) -> Result<Vec<u8>, StoreError> {
    let key = serde_json::to_vec(binding).map_err(|e| StoreError::Io(e.to_string()))?;
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::Io(format!(
            "ACL binding too large to store ({} bytes encoded, at most {MAX_KEY_LEN})",
            key.len()
        )));
    }
    Ok(key)
}

pub fn load_scram(txn: &RoTxn<'_, WithoutTls>, db: Db) -> Result<Vec<ScramCredential>, StoreError> {
    let mut out = Vec::new();
    for entry in db.iter(txn)? {
        let (_, v) = entry?;
        out.push(
            serde_json::from_slice(v)
                .map_err(|e| StoreError::Io(format!("corrupt SCRAM credential: {e}")))?,
        );
    }
    Ok(out)
}

pub fn alter_scram(
    txn: &mut RwTxn<'_>,
    db: Db,
    upserts: &[ScramCredential],
    deletions: &[(String, ScramMechanism)],
) -> Result<Result<(), StoreError>, heed::Error> {
    for (user, mechanism) in deletions {
        db.delete(txn, &scram_key(user, *mechanism))?;
    }
    for c in upserts {
        if c.user.contains('\0') || c.user.len() + 2 > MAX_KEY_LEN {
            return Ok(Err(StoreError::Io(format!(
                "user name {:?} cannot be stored",
                c.user
            ))));
        }
        let value = match serde_json::to_vec(c) {
            Ok(v) => v,
            Err(e) => return Ok(Err(StoreError::Io(e.to_string()))),
        };
        db.put(txn, &scram_key(&c.user, c.mechanism), &value)?;
    }
    Ok(Ok(()))
}

pub fn load_acls(txn: &RoTxn<'_, WithoutTls>, db: Db) -> Result<Vec<AclBinding>, StoreError> {
    let mut out = Vec::new();
    for entry in db.iter(txn)? {
        let (k, _) = entry?;
        out.push(
            serde_json::from_slice(k)
                .map_err(|e| StoreError::Io(format!("corrupt ACL binding: {e}")))?,
        );
    }
    Ok(out)
}

pub fn alter_acls(
    txn: &mut RwTxn<'_>,
    db: Db,
    create: &[AclBinding],
    delete: &[AclBinding],
) -> Result<Result<(), StoreError>, heed::Error> {
    let mut keys = Vec::with_capacity(create.len());
    for b in create {
        match acl_key(b) {
            Ok(k) => keys.push(k),
            Err(e) => return Ok(Err(e)),
        }
    }
    for b in delete {
        if let Ok(k) = acl_key(b) {
            db.delete(txn, &k)?;
        }
    }
    for k in keys {
        db.put(txn, &k, &[])?;
    }
    Ok(Ok(()))
}
