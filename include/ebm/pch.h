// Precompiled header shared by every ebm target: the heavy LibTorch headers
// are parsed once per build instead of once per translation unit.
#pragma once
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
