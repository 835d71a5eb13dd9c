"""The documented Excel functions the generator and the parser know: arity, argument types and result type.

    FUNCTIONS["SUMIF"]        # Function(name='SUMIF', min_args=2, max_args=3, args='rcr', repeat=0, returns='n')

Argument types: n number, i small integer, r range, c criteria, t text, b logical, l lookup value, a any.
`args` gives the types in order; with `repeat` = k the last k types repeat up to max_args (SUM: 'n', 1;
SUMIFS: 'rrc', 2). `weight` is how often the generator picks the function, roughly how common it is in
spreadsheets (SUM, IF, VLOOKUP far ahead of BESSELJ).
"""
from __future__ import annotations

from typing import NamedTuple


class Function(NamedTuple):
    name: str
    min_args: int
    max_args: int
    args: str
    repeat: int
    returns: str
    weight: float

    def arg_type(self, index: int) -> str:
        if index < len(self.args):
            return self.args[index]
        tail = self.args[len(self.args) - self.repeat:]
        return tail[(index - len(self.args)) % len(tail)]


# name min max args repeat returns weight
_TABLE = """
SUM 1 255 n 1 n 30
AVERAGE 1 255 n 1 n 8
MIN 1 255 n 1 n 4
MAX 1 255 n 1 n 5
COUNT 1 255 r 1 n 3
COUNTA 1 255 r 1 n 4
COUNTBLANK 1 1 r 0 n 1
PRODUCT 1 255 n 1 n 1
MEDIAN 1 255 n 1 n 1
STDEV 1 255 n 1 n 1
STDEV.S 1 255 n 1 n 1
VAR.S 1 255 n 1 n 0.5
LARGE 2 2 ri 0 n 1
SMALL 2 2 ri 0 n 1
RANK 2 3 nri 0 n 1
RANK.EQ 2 3 nri 0 n 0.5
SUMPRODUCT 1 255 r 1 n 2
SUMIF 2 3 rcr 0 n 6
SUMIFS 3 255 rrc 2 n 4
COUNTIF 2 2 rc 0 n 6
COUNTIFS 2 254 rc 2 n 3
AVERAGEIF 2 3 rcr 0 n 1
AVERAGEIFS 3 255 rrc 2 n 1
MAXIFS 3 255 rrc 2 n 0.5
MINIFS 3 255 rrc 2 n 0.5
ROUND 2 2 ni 0 n 6
ROUNDUP 2 2 ni 0 n 2
ROUNDDOWN 2 2 ni 0 n 2
INT 1 1 n 0 n 2
ABS 1 1 n 0 n 2
MOD 2 2 nn 0 n 1
POWER 2 2 nn 0 n 0.5
SQRT 1 1 n 0 n 0.5
EXP 1 1 n 0 n 0.3
LN 1 1 n 0 n 0.3
LOG 1 2 nn 0 n 0.3
LOG10 1 1 n 0 n 0.2
CEILING 2 2 nn 0 n 0.5
FLOOR 2 2 nn 0 n 0.5
TRUNC 1 2 ni 0 n 0.5
SIGN 1 1 n 0 n 0.2
PI 0 0 - 0 n 0.2
RAND 0 0 - 0 n 0.3
RANDBETWEEN 2 2 nn 0 n 0.3
IF 2 3 baa 0 a 25
IFERROR 2 2 aa 0 a 6
IFNA 2 2 aa 0 a 1
IFS 2 254 ba 2 a 1
AND 1 255 b 1 b 3
OR 1 255 b 1 b 3
NOT 1 1 b 0 b 1
XOR 1 254 b 1 b 0.2
ISBLANK 1 1 l 0 b 2
ISERROR 1 1 a 0 b 1
ISNUMBER 1 1 a 0 b 1
ISTEXT 1 1 a 0 b 0.5
ISNA 1 1 a 0 b 0.5
VLOOKUP 3 4 lrib 0 a 10
HLOOKUP 3 4 lrib 0 a 1
XLOOKUP 3 6 lrraii 0 a 2
LOOKUP 2 3 lrr 0 a 1
INDEX 2 3 rii 0 a 4
MATCH 2 3 lri 0 n 4
CHOOSE 2 254 ia 1 a 0.5
OFFSET 3 5 riiii 0 a 1
INDIRECT 1 2 tb 0 a 1
ROW 0 1 r 0 n 1
COLUMN 0 1 r 0 n 0.5
ROWS 1 1 r 0 n 0.5
COLUMNS 1 1 r 0 n 0.3
CONCATENATE 1 255 t 1 t 3
CONCAT 1 254 t 1 t 1
TEXTJOIN 3 252 tbr 1 t 0.5
LEFT 1 2 ti 0 t 3
RIGHT 1 2 ti 0 t 2
MID 3 3 tii 0 t 2
LEN 1 1 t 0 n 2
TRIM 1 1 t 0 t 2
UPPER 1 1 t 0 t 1
LOWER 1 1 t 0 t 1
PROPER 1 1 t 0 t 0.5
SUBSTITUTE 3 4 ttti 0 t 1
REPLACE 4 4 tiit 0 t 0.5
FIND 2 3 tti 0 n 1
SEARCH 2 3 tti 0 n 1
TEXT 2 2 nt 0 t 2
VALUE 1 1 t 0 n 1
EXACT 2 2 tt 0 b 0.3
REPT 2 2 ti 0 t 0.3
TODAY 0 0 - 0 n 2
NOW 0 0 - 0 n 1
DATE 3 3 nnn 0 n 2
YEAR 1 1 n 0 n 1.5
MONTH 1 1 n 0 n 1.5
DAY 1 1 n 0 n 1
WEEKDAY 1 2 ni 0 n 0.5
EDATE 2 2 ni 0 n 0.5
EOMONTH 2 2 ni 0 n 0.5
DATEDIF 3 3 nnt 0 n 0.5
NETWORKDAYS 2 3 nnr 0 n 0.5
WORKDAY 2 3 nir 0 n 0.3
HOUR 1 1 n 0 n 0.3
MINUTE 1 1 n 0 n 0.2
PMT 3 5 nnnni 0 n 0.5
FV 3 5 nnnni 0 n 0.2
PV 3 5 nnnni 0 n 0.2
NPV 2 254 nn 1 n 0.2
IRR 1 2 rn 0 n 0.2
UNIQUE 1 3 rbb 0 a 0.3
FILTER 2 3 rba 0 a 0.3
SORT 1 4 riib 0 a 0.2
TRANSPOSE 1 1 r 0 a 0.2
SUBTOTAL 2 255 ir 1 n 1
AGGREGATE 3 253 iir 1 n 0.2
N 1 1 a 0 n 0.2
NA 0 0 - 0 a 0.2
"""


def _parse(table: str) -> dict[str, Function]:
    out = {}
    for line in table.strip().splitlines():
        name, lo, hi, args, repeat, returns, weight = line.split()
        out[name] = Function(name, int(lo), int(hi), "" if args == "-" else args, int(repeat), returns, float(weight))
    return out


FUNCTIONS: dict[str, Function] = _parse(_TABLE)
NAMES = tuple(FUNCTIONS)
