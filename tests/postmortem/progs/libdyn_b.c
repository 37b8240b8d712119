__thread long b_val = 22;
__thread int b_arr[2];
void b_set(long v) { b_val = v; b_arr[0] = (int)v; b_arr[1] = (int)-v; }
