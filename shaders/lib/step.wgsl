// Per-step data written once per step by `set_step`, read through `step: array<u32>` (declared by the
// kernel): a header of counts and offsets, then the arrays of the step batch.
const STEP_N_TOKENS: u32 = 0u;
const STEP_N_OUTPUTS: u32 = 2u;
const STEP_TOKENS: u32 = 3u;
const STEP_POSITIONS: u32 = 4u;
const STEP_TOKEN_SEQ: u32 = 5u;
const STEP_TABLE_START: u32 = 6u;
const STEP_BLOCK_TABLES: u32 = 8u;
const STEP_OUTPUT_ROWS: u32 = 9u;

fn step_token(i: u32) -> u32 {
    return step[step[STEP_TOKENS] + i];
}

fn step_position(i: u32) -> u32 {
    return step[step[STEP_POSITIONS] + i];
}

fn step_seq(i: u32) -> u32 {
    return step[step[STEP_TOKEN_SEQ] + i];
}

fn step_output_row(i: u32) -> u32 {
    return step[step[STEP_OUTPUT_ROWS] + i];
}

// Index of the cache row (block·block_size + slot) holding position `pos` of sequence `s`.
fn kv_row(s: u32, pos: u32, block_size: u32) -> u32 {
    let table = step[STEP_BLOCK_TABLES] + step[step[STEP_TABLE_START] + s];
    return step[table + pos / block_size] * block_size + pos % block_size;
}
