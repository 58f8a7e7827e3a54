//! Feeds arbitrary bytes to the gateway's answer-batch decoder (what a bank
//! sends to /bank/v1/answers) and the receipt decoder. Any panic, hang or
//! runaway allocation is a finding.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run answer_decoder -- -max_total_time=60`

#![no_main]

use libfuzzer_sys::fuzz_target;
use shokai::iso20022::{Limits, decode_answer_batch, decode_batch_receipt};

fuzz_target!(|data: &[u8]| {
    let _ = decode_answer_batch(data, &Limits::default());
    let _ = decode_batch_receipt(data);
});
