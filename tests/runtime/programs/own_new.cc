// A program that replaces operator new: its own must be the one called, runtime or not.
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

static long own_calls;

void *operator new(std::size_t n)
{
    own_calls++;
    void *p = std::malloc(n ? n : 1);
    if (!p)
        throw std::bad_alloc();
    return p;
}

void operator delete(void *p) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }

int main()
{
    for (int i = 0; i < 100; i++)
        delete new std::string(200, 'x');
    std::printf("own operator new calls: %s\n", own_calls >= 100 ? "all" : "missing");
    return 0;
}
