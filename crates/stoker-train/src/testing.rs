//! Fixtures shared by the crate's unit tests.

use stoker_artifact::WindowSpec;
use stoker_zoo::InputShape;

/// Two features, the first the target, predicted one step ahead from `input_len` steps: the
/// smallest input a model of the zoo builds on.
pub fn one_target_of_two(input_len: usize) -> InputShape {
    InputShape {
        window: WindowSpec {
            input_len,
            horizon: 1,
            output_len: 1,
            stride: 1,
        },
        features: 2,
        targets: vec![0],
        anc: None,
    }
}
