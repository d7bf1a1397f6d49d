//! enclave-api
