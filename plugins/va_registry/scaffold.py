"""What ``hub site new NAME --adapter va_registry`` writes (the adapter's ``register_adapters``)."""

from __future__ import annotations

from hub.plugin_api import Adapter

# One synthetic registry row (the person is invented; the ID number's check character is valid).
_EXAMPLE = (
    "姓名,性别,身份证号,出生日期,优抚类别,伤残等级,伤残性质,户籍地址,联系电话,所属区市,"
    "入伍时间,退役时间,抚恤定补标准(元/月),状态\r\n"
    "王建国,男,370202195003120834,1950-03-12,残疾军人,六级,因战,山东省青岛市市南区香港中路1号,"
    "13800000001,市南区,1968-03,1975-12,2150,正常\r\n"
)

ADAPTER = Adapter(
    name="va_registry",
    format="va-registry",
    input_extension="csv",
    example=("register-veteran", "input.csv", _EXAMPLE),
)
