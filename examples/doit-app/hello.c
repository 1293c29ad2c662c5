#include <stdio.h>

int main(void)
{
    printf("Hello from the doit example app\n");
    return 0;
}
