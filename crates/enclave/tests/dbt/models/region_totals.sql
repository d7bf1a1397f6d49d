{{ config(materialized='table') }}
select region, count(*) as customers, LISTAGG(name, ',') WITHIN GROUP (ORDER BY name) as names
from {{ ref('stg_customers') }}
group by region
