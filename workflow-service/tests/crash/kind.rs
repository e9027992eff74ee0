//! The kinds of work the crash harness submits, and what each must end as.

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Three steps: COMPLETED.
    Chain,
    /// Two steps, then a step that fails: both compensated, ROLLED_BACK.
    Failing,
    /// A step, a human approval, a step: PAUSED, then COMPLETED once approved.
    Approval,
    /// A step the policy escalates to an approval (the capability requires
    /// one), then a step: COMPLETED once approved.
    Guarded,
    /// One capability through ExecuteAction (a one-step workflow): COMPLETED.
    Action,
}

impl Kind {
    pub fn of(i: usize) -> Self {
        [
            Self::Chain,
            Self::Failing,
            Self::Approval,
            Self::Guarded,
            Self::Action,
        ][i % 5]
    }

    pub fn needs_approval(self) -> bool {
        matches!(self, Self::Approval | Self::Guarded)
    }

    pub fn spec(self) -> &'static str {
        match self {
            Self::Chain => {
                "name: ledger_chain\nsteps:\n\
                 \x20 - {name: w1, capability: ledger.write, inputs: {entry: a}, compensation: {capability: ledger.erase, inputs: {entry: a}}}\n\
                 \x20 - {name: w2, capability: ledger.write, depends_on: [w1], inputs: {entry: b}, compensation: {capability: ledger.erase, inputs: {entry: b}}}\n\
                 \x20 - {name: w3, capability: ledger.write, depends_on: [w2], inputs: {entry: c}, compensation: {capability: ledger.erase, inputs: {entry: c}}}\n"
            }
            Self::Failing => {
                "name: ledger_failing\nsteps:\n\
                 \x20 - {name: w1, capability: ledger.write, inputs: {entry: a}, compensation: {capability: ledger.erase, inputs: {entry: a}}}\n\
                 \x20 - {name: w2, capability: ledger.write, depends_on: [w1], inputs: {entry: b}, compensation: {capability: ledger.erase, inputs: {entry: b}}}\n\
                 \x20 - {name: boom, capability: ledger.fail, depends_on: [w2], inputs: {entry: x}}\n"
            }
            Self::Approval => {
                "name: ledger_approval\nsteps:\n\
                 \x20 - {name: w1, capability: ledger.write, inputs: {entry: a}, compensation: {capability: ledger.erase, inputs: {entry: a}}}\n\
                 \x20 - {name: review, type: HUMAN_APPROVAL, depends_on: [w1], approval: {message: go?}}\n\
                 \x20 - {name: w2, capability: ledger.write, depends_on: [review], inputs: {entry: b}, compensation: {capability: ledger.erase, inputs: {entry: b}}}\n"
            }
            Self::Action => "",
            Self::Guarded => {
                "name: ledger_guarded\nsteps:\n\
                 \x20 - {name: w1, capability: ledger.guarded, inputs: {entry: a}, compensation: {capability: ledger.erase, inputs: {entry: a}}}\n\
                 \x20 - {name: w2, capability: ledger.write, depends_on: [w1], inputs: {entry: b}, compensation: {capability: ledger.erase, inputs: {entry: b}}}\n"
            }
        }
    }
}
