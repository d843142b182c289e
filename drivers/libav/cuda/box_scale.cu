// Box (area-average) downscaling of 8-bit picture planes on the GPU, for corecast's ladder
// after NVDEC (drivers/libav/src/cuda_scale.rs loads the PTX built from this file).
//
// Output pixel (x, y) of a dst_w x dst_h plane is the rounded mean of the source rectangle
// [x*src_w/dst_w, (x+1)*src_w/dst_w) x [y*src_h/dst_h, (y+1)*src_h/dst_h), in integers, so
// the CPU reference in cuda_scale.rs computes the same bytes exactly. When the plane grows
// (not used by the ladder, which never upscales) the rectangle is the one nearest pixel.
//
// Rebuild box_scale.ptx (the build machines have no CUDA toolkit, so the PTX is checked in):
//   nvcc -ptx -arch=compute_75 -O3 -o box_scale.ptx box_scale.cu
//   then set `.version 6.0` and `.target sm_52` at its top (see docs/transcode.md).

__device__ __forceinline__ void span(int i, int src, int dst, int* first, int* end)
{
    int a = (int)(((long long)i * src) / dst);
    int b = (int)(((long long)(i + 1) * src) / dst);
    *first = a;
    *end = b > a ? b : a + 1;
}

// One plane of single bytes (Y, or a U or V plane) into one plane.
extern "C" __global__ void box_scale_plane(const unsigned char* __restrict__ src, int src_pitch,
                                           int src_w, int src_h, unsigned char* __restrict__ dst,
                                           int dst_pitch, int dst_w, int dst_h)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    int x0, x1, y0, y1;
    span(x, src_w, dst_w, &x0, &x1);
    span(y, src_h, dst_h, &y0, &y1);
    unsigned int sum = 0;
    for (int sy = y0; sy < y1; ++sy) {
        const unsigned char* row = src + (size_t)sy * src_pitch;
        for (int sx = x0; sx < x1; ++sx) sum += row[sx];
    }
    unsigned int count = (unsigned int)((x1 - x0) * (y1 - y0));
    dst[(size_t)y * dst_pitch + x] = (unsigned char)((sum + count / 2) / count);
}

// The interleaved U/V plane of NV12 (src_w, src_h count U/V pairs) into separate U and V planes.
extern "C" __global__ void box_scale_uv_pairs(const unsigned char* __restrict__ src, int src_pitch,
                                              int src_w, int src_h, unsigned char* __restrict__ dst_u,
                                              unsigned char* __restrict__ dst_v, int dst_pitch,
                                              int dst_w, int dst_h)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    int x0, x1, y0, y1;
    span(x, src_w, dst_w, &x0, &x1);
    span(y, src_h, dst_h, &y0, &y1);
    unsigned int sum_u = 0, sum_v = 0;
    for (int sy = y0; sy < y1; ++sy) {
        const unsigned char* row = src + (size_t)sy * src_pitch;
        for (int sx = x0; sx < x1; ++sx) {
            sum_u += row[2 * sx];
            sum_v += row[2 * sx + 1];
        }
    }
    unsigned int count = (unsigned int)((x1 - x0) * (y1 - y0));
    size_t at = (size_t)y * dst_pitch + x;
    dst_u[at] = (unsigned char)((sum_u + count / 2) / count);
    dst_v[at] = (unsigned char)((sum_v + count / 2) / count);
}
