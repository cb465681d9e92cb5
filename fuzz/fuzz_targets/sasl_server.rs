//! Feeds arbitrary bytes to the broker's server side of SASL and to the client-certificate
//! subject reader: PLAIN messages, SCRAM client-first and client-final messages (after a
//! client-first of the fuzzer's own), and DER names. Each must answer or fail, never panic,
//! hang or allocate without bound.
//!
//! The first byte picks the parser; for SCRAM the rest is split at the first NUL byte into the
//! client-first and the client-final message. The stored credential has 1 PBKDF2 iteration so
//! PLAIN checks stay cheap (real ones are refused below 4096 when stored, not when checked).
#![no_main]

use libfuzzer_sys::fuzz_target;
use runnel::auth::scram::{Lookup, client_first, credential_from_salted};
use runnel::auth::{dn, plain};
use runnel::log::ScramMechanism;

#[global_allocator]
static ALLOCATOR: runnel::alloc::LazyHugeAlloc = runnel::alloc::LazyHugeAlloc;

fn lookup(mechanism: ScramMechanism, real: bool) -> Lookup {
    let len = match mechanism {
        ScramMechanism::Sha256 => 32,
        ScramMechanism::Sha512 => 64,
    };
    let mut credential =
        credential_from_salted("alice", mechanism, b"salt".to_vec(), 1, &vec![7; len]);
    credential.iterations = 1;
    Lookup { credential, real }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mechanism = if selector & 0x10 == 0 {
        ScramMechanism::Sha256
    } else {
        ScramMechanism::Sha512
    };
    let real = selector & 0x20 == 0;
    match selector % 4 {
        0 => {
            let _ = plain::username(rest);
            let _ = plain::check(rest, &lookup(mechanism, real));
        }
        1 => {
            let _ = client_first(mechanism, rest, "servernonce", |_| lookup(mechanism, real));
        }
        2 => {
            let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            let (first, last) = rest.split_at(split);
            let last = last.get(1..).unwrap_or_default();
            if let Ok((exchange, _)) =
                client_first(mechanism, first, "servernonce", |_| lookup(mechanism, real))
            {
                let _ = exchange.client_final(last);
            }
        }
        _ => {
            let _ = dn::subject(rest);
            let _ = dn::name_rfc2253(rest);
        }
    }
});
