//! The forward over a sequence: per step and block of batch rows, both products and the gate
//! pass on one thread.

use super::*;

/// One step's forward over a block of batch rows, on one thread while its [B, 4H] gates are in
/// cache: the gate pre-activations x_t·wx + h_{t−1}·wh (two serial products), then one fused
/// pass that activates them in place (with the bias), writes c_t and h_t, and h_t lowered into
/// `h_low` when that is not empty. One parallel region a step.
struct ForwardStep<'a, E> {
    gates: &'a mut [f32],
    /// x_t, [B, d_in].
    x: &'a [E],
    wx: &'a [E],
    /// h_{t−1} (empty at t = 0).
    h_prev: &'a [E],
    wh: &'a [E],
    bias: &'a [f32],
    c_prev: &'a [f32],
    c: &'a mut [f32],
    h: &'a mut [f32],
    h_low: &'a mut [E],
    d_in: usize,
    hidden: usize,
}

impl<E: Elem> Rows for ForwardStep<'_, E> {
    fn split(self, k: usize, _parts: usize) -> (Self, Self) {
        let hd = self.hidden;
        let (g0, g1) = split_rows_mut(self.gates, k, 4 * hd);
        let (x0, x1) = split_rows(self.x, k, self.d_in);
        let (r0, r1) = split_rows(self.h_prev, k, hd);
        let (p0, p1) = split_rows(self.c_prev, k, hd);
        let (c0, c1) = split_rows_mut(self.c, k, hd);
        let (h0, h1) = split_rows_mut(self.h, k, hd);
        let (l0, l1) = split_rows_mut(self.h_low, k, hd);
        let half = |gates, x, h_prev, c_prev, c, h, h_low| ForwardStep {
            gates,
            x,
            wx: self.wx,
            h_prev,
            wh: self.wh,
            bias: self.bias,
            c_prev,
            c,
            h,
            h_low,
            d_in: self.d_in,
            hidden: hd,
        };
        (
            half(g0, x0, r0, p0, c0, h0, l0),
            half(g1, x1, r1, p1, c1, h1, l1),
        )
    }
}

versions! {
    fn forward_step_impl<E: Elem>(s: ForwardStep<'_, E>) {
        let hd = s.hidden;
        let bias = &s.bias[..4 * hd];
        let keep_low = !s.h_low.is_empty();
        let rows = s
            .gates
            .chunks_exact_mut(4 * hd)
            .zip(s.c_prev.chunks_exact(hd))
            .zip(s.c.chunks_exact_mut(hd))
            .zip(s.h.chunks_exact_mut(hd));
        for (r, (((gates, c_prev), c), h)) in rows.enumerate() {
            for u in (0..hd).step_by(LANES) {
                let w = LANES.min(hd - u);
                // (No `array::map` here: its closure is not inlined into the AVX-512 build.)
                let mut i = load(gates, u, w);
                let mut f = load(gates, hd + u, w);
                let mut g = load(gates, 2 * hd + u, w);
                let mut o = load(gates, 3 * hd + u, w);
                let bi = load(bias, u, w);
                let bf = load(bias, hd + u, w);
                let bg = load(bias, 2 * hd + u, w);
                let bo = load(bias, 3 * hd + u, w);
                let cp = load(c_prev, u, w);
                let mut cell = [0f32; LANES];
                let mut out = [0f32; LANES];
                for l in 0..LANES {
                    i[l] = sigmoid(i[l] + bi[l]);
                    f[l] = sigmoid(f[l] + bf[l]);
                    g[l] = tanh(g[l] + bg[l]);
                    o[l] = sigmoid(o[l] + bo[l]);
                    cell[l] = f[l].mul_add(cp[l], i[l] * g[l]);
                    out[l] = o[l] * tanh(cell[l]);
                }
                for (k, block) in [i, f, g, o].iter().enumerate() {
                    store(gates, k * hd + u, w, block);
                }
                store(c, u, w, &cell);
                store(h, u, w, &out);
                if keep_low {
                    store(s.h_low, r * hd + u, w, &out);
                }
            }
        }
    }
}

fn forward_step<E: Elem>(s: ForwardStep<'_, E>) {
    let (d, hd) = (s.d_in, s.hidden);
    let rows = s.gates.len() / (4 * hd);
    E::matmul_serial(
        MatMut::row_major(s.gates, rows, 4 * hd),
        Mat::row_major(s.x, rows, d),
        Mat::row_major(s.wx, d, 4 * hd),
        false,
    );
    if !s.h_prev.is_empty() {
        E::matmul_serial(
            MatMut::row_major(s.gates, rows, 4 * hd),
            Mat::row_major(s.h_prev, rows, hd),
            Mat::row_major(s.wh, hd, 4 * hd),
            true,
        );
    }
    dispatch!(forward_step_impl::<E>(s))
}

/// Slots `prev` (read) and `cur` (written), `len` long, of `buf` (`prev != cur`).
fn previous_and_current(
    buf: &mut [f32],
    prev: usize,
    cur: usize,
    len: usize,
) -> (&[f32], &mut [f32]) {
    assert_ne!(prev, cur);
    if prev < cur {
        let (done, rest) = buf.split_at_mut(cur * len);
        (&done[prev * len..(prev + 1) * len], &mut rest[..len])
    } else {
        let (rest, done) = buf.split_at_mut(prev * len);
        (&done[..len], &mut rest[cur * len..(cur + 1) * len])
    }
}

/// `parts`: how many row blocks the fused passes run in (None: by the shape and thread count).
pub(super) fn forward<E: Elem>(
    x: &[f32],
    steps: usize,
    batch: usize,
    w: &LstmWeights,
    keep_tape: bool,
    parts: Option<usize>,
) -> (Vec<f32>, Option<LstmTape>) {
    w.check();
    let (d, hd) = (w.d_in, w.hidden);
    let x_dims = [steps, batch, d];
    expect_len(
        "lstm_forward: x must be [steps, batch, d_in]",
        x.len(),
        &x_dims,
    );
    // The state buffers: [T, B, 4H] gates at most.
    crate::size::product("lstm_forward: gates", &[steps, batch, 4, hd]);
    let g4 = 4 * hd;
    let n = steps * batch;
    let (bh, bg) = (batch * hd, batch * g4);
    let parts = parts.unwrap_or_else(|| default_parts(batch, hd));

    // Without a tape only one step's gates and two steps' cells are live: the step's gates
    // stay in cache instead of streaming a [T·B, 4H] buffer through memory three times.
    let gate_slots = if keep_tape { steps } else { 1 };
    let cell_slots = if keep_tape { steps } else { 2 };
    // Every element of these is written below (each step's input product overwrites its gates).
    let mut gates = Buf::<f32>::take(gate_slots * bg);
    let mut cells = Buf::<f32>::take(cell_slots * bh);
    let mut h = Buf::<f32>::take(n * hd);
    if n > 0 && hd > 0 {
        let (xl, wxl, whl) = (E::lower(x), E::lower(w.wx), E::lower(w.wh));
        // h_{t−1} lowered (read) and h_t lowered (written) in turn, for bf16.
        let low_len = if E::NEEDS_COPY { bh } else { 0 };
        let mut lows = [vec![E::default(); low_len], vec![E::default(); low_len]];
        let zeros = vec![0f32; bh];
        for t in 0..steps {
            let (h_done, h_rest) = h.split_at_mut(t * bh);
            let [even, odd] = &mut lows;
            let (low_prev, h_low) = if t % 2 == 0 { (odd, even) } else { (even, odd) };
            let (c_prev, c) = if t == 0 {
                (&zeros[..], &mut cells[..bh])
            } else {
                previous_and_current(&mut cells, (t - 1) % cell_slots, t % cell_slots, bh)
            };
            let h_prev = if t == 0 {
                &[][..]
            } else {
                &E::pick(&h_done[(t - 1) * bh..], low_prev)[..bh]
            };
            let slot = t % gate_slots;
            let step = ForwardStep {
                gates: &mut gates[slot * bg..(slot + 1) * bg],
                x: &xl[t * batch * d..(t + 1) * batch * d],
                wx: &wxl,
                h_prev,
                wh: &whl,
                bias: w.bias,
                c_prev,
                c,
                h: &mut h_rest[..bh],
                h_low,
                d_in: d,
                hidden: hd,
            };
            run_parts(step, batch, parts, &forward_step);
        }
    }
    let tape = keep_tape.then_some(LstmTape {
        steps,
        batch,
        hidden: hd,
        gates,
        cells,
    });
    (h.into_vec(), tape)
}
