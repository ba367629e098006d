//! Validation of every channel-service request: each function checks one request type, names the
//! field it refuses, and returns the values the handler works with.
