// Convolutions of images with few input channels (a network's first layer)
// whose input gradient is one matrix product over every output pixel of the
// batch, [B * OH * OW, O] x W [O, C k k], and a col2im. oneDNN's
// backward-data kernel takes ~15x the forward's time on a one-channel input
// (BENCHMARKS.md: the first layer's input gradient alone was a third of the
// peer's sampling time).
#include <ATen/Parallel.h>

#include "ebm/core/device.h"
#include "ebm/energy/conv.h"

namespace ebm {
namespace {
struct Geometry {
  int64_t b, c, h, w, k, s, p, oh, ow;
  int64_t kk() const { return c * k * k; }
  int64_t rows() const { return b * oh * ow; }
};

// The adjoint: dx[b, ci, iy, ix] += dcols[row, (ci, ky, kx)].
void col2im(const float* cols, float* dx, const Geometry& g) {
  at::parallel_for(0, g.b, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      std::fill(dx + b * g.c * g.h * g.w, dx + (b + 1) * g.c * g.h * g.w, 0.f);
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const float* row = cols + ((b * g.oh + oy) * g.ow + ox) * g.kk();
          for (int64_t ci = 0; ci < g.c; ++ci) {
            float* img = dx + (b * g.c + ci) * g.h * g.w;
            for (int64_t ky = 0; ky < g.k; ++ky) {
              const int64_t iy = oy * g.s - g.p + ky;
              if (iy < 0 || iy >= g.h) continue;
              const float* in = row + (ci * g.k + ky) * g.k;
              for (int64_t kx = 0; kx < g.k; ++kx) {
                const int64_t ix = ox * g.s - g.p + kx;
                if (ix >= 0 && ix < g.w) img[iy * g.w + ix] += in[kx];
              }
            }
          }
        }
    }
  });
}

// The forward is ATen's convolution (fast for these shapes); the input
// gradient, which oneDNN computes ~15x slower than the forward for one input
// channel, is one product of the output gradient's pixels with W and a col2im.
struct SmallInputConv : torch::autograd::Function<SmallInputConv> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor w,
                               torch::Tensor bias, int64_t stride, int64_t padding) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["bias"] = bias.defined();
    return torch::conv2d(x, w, bias, {stride, stride}, {padding, padding});
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1];
    const int64_t s = ctx->saved_data["stride"].toInt(), p = ctx->saved_data["padding"].toInt(), k = w.size(2);
    const auto& go = grads[0];  // [B, O, OH, OW]
    Geometry g{x.size(0), x.size(1), x.size(2), x.size(3), k, s, p, go.size(2), go.size(3)};
    torch::Tensor dx, dw, db;
    const bool want_w = ctx->needs_input_grad(1), want_b = ctx->needs_input_grad(2) && ctx->saved_data["bias"].toBool();
    if (torch::GradMode::is_enabled()) {
      // A backward that builds a graph (create_graph: score matching, a
      // gradient penalty) takes ATen's differentiable convolution backward,
      // so the input gradient can itself be differentiated.
      auto r = at::convolution_backward(go, x, w, want_b ? c10::optional<at::IntArrayRef>(w.size(0)) : c10::nullopt,
                                        {s, s}, {p, p}, {1, 1}, false, {0, 0}, 1,
                                        {ctx->needs_input_grad(0), want_w, want_b});
      return {std::get<0>(r), std::get<1>(r), std::get<2>(r), torch::Tensor(), torch::Tensor()};
    }
    if (ctx->needs_input_grad(0)) {
      auto rows = go.permute({0, 2, 3, 1}).contiguous().view({g.rows(), w.size(0)});  // output pixels [rows, O]
      auto dcols = rows.mm(w.reshape({w.size(0), g.kk()}));                            // [rows, C k k]
      dx = torch::empty({g.b, g.c, g.h, g.w}, go.options());
      col2im(dcols.data_ptr<float>(), dx.data_ptr<float>(), g);
    }
    if (want_w || want_b) {
      auto r = at::convolution_backward(go, x, w, want_b ? c10::optional<at::IntArrayRef>(w.size(0)) : c10::nullopt,
                                        {s, s}, {p, p}, {1, 1}, false, {0, 0}, 1, {false, want_w, want_b});
      dw = std::get<1>(r);
      db = std::get<2>(r);
    }
    return {dx, dw, db, torch::Tensor(), torch::Tensor()};
  }
};
}  // namespace

bool small_input_conv_applies(const torch::Tensor& x, const torch::Tensor& w) {
  // (float32 CPU, few input channels, square kernels; a backward with
  // create_graph takes ATen's differentiable path)
  return cpu_fast_path(x) && x.scalar_type() == torch::kFloat && w.scalar_type() == torch::kFloat &&
         x.dim() == 4 && x.size(1) <= 3 && w.dim() == 4 && w.size(2) == w.size(3) && x.size(0) >= 1;
}

torch::Tensor small_input_conv2d(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias,
                                 int64_t stride, int64_t padding) {
  return SmallInputConv::apply(x, w, bias, stride, padding);
}

}  // namespace ebm
