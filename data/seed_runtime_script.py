# Calculate theoretical runtime
import math

def get_time(m, k, n):
    # Simplified FLOP counting for matrix multiplication
    return m * k * n / (16 * 312e12)  # 16 GPUs, 312 TFLOPS each

# MHA layer runtime
mha_qkv = get_time(1024*10000, 8192, 512)  # QKV projections
mha_attn = get_time(1024*10000*4, 128, 10000)  # Attention computation
mha_total = 2 * (mha_qkv + mha_attn)

# MLP layer runtime
mlp_fc1 = get_time(1024*10000, 8192, 2048)  # FC1
mlp_fc2 = get_time(1024*10000, 2048, 8192)  # FC2
mlp_total = 2 * (mlp_fc1 + mlp_fc2)

print(f"Total Runtime: {mha_total + mlp_total:.2f} seconds")
