//! Receipts from the vault's attestation log. Until the vault keeps a log, a
//! signature comes without one and there is nothing to store.

use qubes_rpc::SignResult;
use sequoia_openpgp::packet::Signature;

use crate::error::ShimError;

pub fn accept(_result: &SignResult, _sig: &Signature) -> Result<(), ShimError> {
    Ok(())
}

pub fn write_receipt_file(path: &str, result: &SignResult) -> Result<(), ShimError> {
    if result.receipt.is_empty() {
        return Err(ShimError::Usage(
            "the vault sent no receipt (it keeps no log)".into(),
        ));
    }
    std::fs::write(path, &result.receipt).map_err(ShimError::io(format!("writing receipt {path}")))
}
