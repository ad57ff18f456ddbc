// embed.hip: out[i, :] = table[tokens[i], :] as f32, one block per token, for every weight layout.
#include "common.h"

#define EMBED(name, elem)                                                                             \
    extern "C" __global__ void embed_##name(const void* w, const u16* d, const u16* m, const u32* tokens, \
                                            float* out, int dim) {                                   \
        kernel_start();                                                                               \
        const size_t row = tokens[blockIdx.x];                                                        \
        for (int c = threadIdx.x; c < dim; c += blockDim.x)                                            \
            out[(size_t)blockIdx.x * dim + c] = elem(w, d, m, row * dim + c);                          \
    }
FOR_EACH_LAYOUT(EMBED)
