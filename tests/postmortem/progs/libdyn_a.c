__thread long a_val = 11;
void a_set(long v) { a_val = v; }
