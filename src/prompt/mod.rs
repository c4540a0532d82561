//! Ways a person answers an MFA request.

pub mod terminal;
