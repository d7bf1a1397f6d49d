//! enclave-gateway
