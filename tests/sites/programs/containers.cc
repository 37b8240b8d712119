// Standard containers allocating after a call chain of the program's own functions:
// main -> deep (recursive) -> run_all -> use_<container> -> <container operation>.
// Each operation that allocates is marked SITE <name>; the call of the function that
// holds it is marked CALLER <name>. Sizes and counts are printed for the test to check.
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#define NOINLINE __attribute__((noinline, noclone))
// An opaque use after each call keeps the compiler from turning it into a jump.
static volatile long sink;
#define KEEP_FRAME() (sink = sink + 1)

enum { RESERVED = 1000, INSERTS = 37, STRING_LENGTH = 200 };

struct Payload {
    long words[12];
};

static size_t reserved_capacity;

NOINLINE static void use_vector(std::vector<long> &v)
{
    v.reserve(RESERVED); /* SITE vector_reserve */
    KEEP_FRAME();
    reserved_capacity = v.capacity();
    // one element more than reserved: exactly one reallocation
    for (long i = 0; i <= RESERVED; i++)
        v.push_back(i * 3); /* SITE vector_push */
    KEEP_FRAME();
}

NOINLINE static void use_string(std::string &s, char c)
{
    s.assign(STRING_LENGTH, c); /* SITE string */
    KEEP_FRAME();
}

NOINLINE static void use_map(std::map<int, Payload> &m)
{
    for (int k = 0; k < INSERTS; k++)
        m.insert({k * 7, Payload{{k}}}); /* SITE map */
    KEEP_FRAME();
}

NOINLINE static std::shared_ptr<Payload> use_shared(long first)
{
    auto p = std::make_shared<Payload>(); /* SITE make_shared */
    KEEP_FRAME();
    p->words[0] = first;
    return p;
}

NOINLINE static void run_all()
{
    std::vector<long> v;
    use_vector(v); /* CALLER vector_reserve */
    KEEP_FRAME();
    std::string s;
    use_string(s, 'm'); /* CALLER string */
    KEEP_FRAME();
    std::map<int, Payload> m;
    use_map(m); /* CALLER map */
    KEEP_FRAME();
    std::shared_ptr<Payload> p = use_shared(v[5]); /* CALLER make_shared */
    KEEP_FRAME();
    std::printf("reserved %zu capacity %zu string %zu map %zu pair %zu shared %ld\n",
                reserved_capacity, v.capacity(), s.capacity(), m.size(),
                sizeof(std::map<int, Payload>::value_type), p->words[0]);
}

NOINLINE static void deep(int d)
{
    if (d)
        deep(d - 1);
    else
        run_all();
    KEEP_FRAME();
}

int main()
{
    deep(3);
    return 0;
}
