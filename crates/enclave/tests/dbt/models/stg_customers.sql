{{ config(materialized='view') }}
select id, name, region, signup_date,
       IFF(active, 'yes', 'no') as active_flag,
       DATEADD(month, 1, signup_date::DATE) as renewal_date
from {{ ref('customers') }}
